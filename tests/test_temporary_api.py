"""A killed `biobridge ingest` leaves no temporary Prefect API behind (issue 12, Why 6: about
230 MB each)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil  # type: ignore[import-untyped]
import pytest

pytestmark = pytest.mark.slow


def api_children(pid: int) -> list[psutil.Process]:
    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    return [c for c in children if "prefect.server.api.server:create_app" in " ".join(c.cmdline())]


def test_sigkilled_ingest_takes_its_temporary_api_with_it(pg_url: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BIOBRIDGE_", "PREFECT_"))}
    env |= {"BIOBRIDGE_DATABASE_URL": pg_url, "BIOBRIDGE_DATA_DIR": str(tmp_path / "data")}
    ingest = subprocess.Popen(
        [sys.executable, "-c", "from deployments.cli import main; raise SystemExit(main())",
         "ingest"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not (servers := api_children(ingest.pid)):
            assert ingest.poll() is None and time.monotonic() < deadline, "no temporary API seen"
            time.sleep(0.2)
        os.kill(ingest.pid, signal.SIGKILL)
        ingest.wait()
        gone, alive = psutil.wait_procs(servers, timeout=30)
        assert not alive, [p.cmdline() for p in alive]
        assert gone
    finally:
        if ingest.poll() is None:
            ingest.kill()


def test_sigkilled_up_takes_its_server_and_receiver_with_it(pg_url: str, tmp_path: Path) -> None:
    from tests.test_stack import running_up, stack_env

    with running_up(stack_env(tmp_path, pg_url), tmp_path / "up.log") as (up, _):
        children = psutil.Process(up.pid).children(recursive=True)
        assert children
        os.kill(up.pid, signal.SIGKILL)
        up.wait()
        _, alive = psutil.wait_procs(children, timeout=30)
        assert not alive, [p.cmdline() for p in alive]
