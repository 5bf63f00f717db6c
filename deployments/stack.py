"""`biobridge up`: the whole pipeline on one machine, with embedded defaults.

Postgres (the configured one, or an embedded server under BIOBRIDGE_DATA_DIR), a Prefect server
with its UI, the receiver in its own process (it keeps accepting webhooks whatever happens to
Prefect or Postgres), and the ingest deployment served on a schedule in this process.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import ExitStack

from deployments.prefect_env import configure_prefect_env
from tasks.settings import get_pipeline_settings


def wait_http_ok(url: str, *, timeout_s: float, what: str, proc: subprocess.Popen[bytes]) -> None:
    """Poll `url` until it answers 200; fail with what went wrong if the process died first."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode} before it was ready")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310 - our own localhost URL
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{what} did not answer {url} within {timeout_s:.0f}s")


def _spawn(
    stack: ExitStack, args: list[str], *, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    env = os.environ.copy() if env is None else env
    proc = subprocess.Popen(args, env=env)  # noqa: S603 - fixed argv, no shell

    def stop() -> None:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()

    stack.callback(stop)
    return proc


def run_stack(*, interval_s: int | None, prefect_port: int) -> int:
    """Start everything and serve the scheduled ingest until interrupted."""
    settings = get_pipeline_settings()
    configure_prefect_env(settings.data_dir)
    # Until the runner takes over, SIGTERM stops us like Ctrl-C: the children are stopped too.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    from ops.api import database_url, migrate
    from tasks.settings import PIPELINE_ONLY_ENV

    migrate()
    # Flow runs run in child processes of the runner: hand them the resolved database. The
    # receiver gets none of the pipeline's variables (it needs neither Postgres nor Prefect).
    os.environ.setdefault("BIOBRIDGE_DATABASE_URL", database_url().get_secret_value())
    receiver_env = {k: v for k, v in os.environ.items() if k not in PIPELINE_ONLY_ENV}
    api = f"http://127.0.0.1:{prefect_port}/api"
    with ExitStack() as stack:
        server = _spawn(
            stack,
            [
                sys.executable,
                "-m",
                "prefect",
                "server",
                "start",
                "--host",
                "127.0.0.1",
                "--port",
                str(prefect_port),
            ],
        )
        receiver = _spawn(
            stack, [sys.executable, "-m", "deployments.cli", "receiver"], env=receiver_env
        )
        wait_http_ok(f"{api}/health", timeout_s=120, what="the Prefect server", proc=server)
        wait_http_ok(
            f"http://{settings.host}:{settings.port}/healthz",
            timeout_s=30,
            what="the receiver",
            proc=receiver,
        )
        os.environ["PREFECT_API_URL"] = api
        from flows.ingest import ingest

        every = interval_s or settings.ingest_interval_s
        print(
            f"biobridge is up\n"
            f"  receiver   http://{settings.host}:{settings.port}/webhooks/<vendor>\n"
            f"  Prefect UI http://127.0.0.1:{prefect_port}\n"
            f"  landing    {settings.landing_location()}\n"
            f"  ingest     every {every}s (deployment ingest-landed-webhooks/scheduled)\n"
            "Ctrl-C stops everything.",
            flush=True,
        )
        # Ctrl-C takes the same graceful path as SIGTERM: the runner cancels runs in flight
        # (their files stay pending and load on the next start), then the children stop.
        signal.signal(signal.SIGINT, lambda *_: os.kill(os.getpid(), signal.SIGTERM))
        ingest.serve(name="scheduled", interval=every, pause_on_shutdown=False)
    return 0
