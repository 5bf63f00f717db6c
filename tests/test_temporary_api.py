"""A killed `biobridge up` leaves no Prefect server or receiver behind (issue 12, Why 6: about
230 MB each). `biobridge ingest` without a stack starts no server at all (test_bare_ingest.py)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import psutil  # type: ignore[import-untyped]
import pytest

pytestmark = pytest.mark.slow


def test_sigkilled_up_takes_its_server_and_receiver_with_it(pg_url: str, tmp_path: Path) -> None:
    from tests.test_stack import running_up, stack_env

    with running_up(stack_env(tmp_path, pg_url), tmp_path / "up.log") as (up, _):
        children = psutil.Process(up.pid).children(recursive=True)
        assert children
        os.kill(up.pid, signal.SIGKILL)
        up.wait()
        _, alive = psutil.wait_procs(children, timeout=30)
        assert not alive, [p.cmdline() for p in alive]
