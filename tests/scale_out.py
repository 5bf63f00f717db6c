"""The scaled-out topology of deployments/compose.yaml, as processes on this machine.

A Prefect server backed by Postgres, the work pool and deployment of deployments/prefect.yaml
(`prefect deploy`, as the compose file's `deploy` service runs it), `prefect worker start`
processes on that pool, and `biobridge receiver` processes, each on its own port. The store and
the Biobridge database are the caller's (the moto S3 server and a throwaway database in tests).
Used by tests/test_scale_out.py and benchmarks/scale_out.py.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from tasks.settings import PIPELINE_ONLY_ENV

ROOT = Path(__file__).resolve().parents[1]
POOL = "biobridge"  # deployments/prefect.yaml's work pool
DEPLOYMENT = "ingest-landed-webhooks/landed-webhooks"
TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def asyncpg_url(url: str) -> str:
    """The SQLAlchemy URL the Prefect server takes for a postgresql:// URL."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(scheme="postgresql+asyncpg"))


@dataclass
class Stack:
    """Handles on the running processes, and the Prefect API to drive them."""

    api: str
    env: dict[str, str]
    receivers: list[str] = field(default_factory=list)
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    logs: Path = ROOT

    def run_deployment(self, **params: Any) -> str:
        """Create a flow run of the deployment with IngestParams `params`; returns its id."""
        flow, name = DEPLOYMENT.split("/")
        deployment = httpx.get(f"{self.api}/deployments/name/{flow}/{name}", timeout=30)
        deployment.raise_for_status()
        run = httpx.post(
            f"{self.api}/deployments/{deployment.json()['id']}/create_flow_run",
            json={"parameters": {"params": params}},
            timeout=30,
        )
        run.raise_for_status()
        return str(run.json()["id"])

    def flow_run(self, run_id: str) -> dict[str, Any]:
        resp = httpx.get(f"{self.api}/flow_runs/{run_id}", timeout=30)
        resp.raise_for_status()
        result: dict[str, Any] = resp.json()
        return result

    def wait_running(self, run_ids: Sequence[str], *, timeout_s: float) -> None:
        """Wait until one of the runs has started on a worker."""
        deadline = time.monotonic() + timeout_s
        while not any(self.flow_run(r)["state_type"] != "SCHEDULED" for r in run_ids):
            if time.monotonic() > deadline:
                raise TimeoutError(f"no worker started any of {list(run_ids)} in {timeout_s} s")
            time.sleep(0.3)

    def wait(self, run_ids: Sequence[str], *, timeout_s: float) -> list[dict[str, Any]]:
        """Wait until every run is in a terminal state; their API records."""
        deadline = time.monotonic() + timeout_s
        while True:
            runs = [self.flow_run(r) for r in run_ids]
            if all(r["state_type"] in TERMINAL for r in runs):
                return runs
            if time.monotonic() > deadline:
                states = {r["name"]: r["state_type"] for r in runs}
                raise TimeoutError(f"flow runs not finished after {timeout_s} s: {states}")
            time.sleep(0.5)


def _wait_http(url: str, proc: subprocess.Popen[bytes], *, timeout_s: float, log: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise TimeoutError(f"{url} not up after {timeout_s} s: {log.read_text()[-2000:]}")


@contextmanager
def _process(
    args: Sequence[str], *, env: dict[str, str], log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """A child in its own process group, stopped (SIGTERM, then SIGKILL) on exit."""
    with log.open("ab") as out:
        proc = subprocess.Popen(
            list(args), env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    try:
        yield proc
    finally:
        stop(proc)


def stop(proc: subprocess.Popen[bytes], *, grace_s: float = 10) -> None:
    """SIGTERM the child's process group (a worker's flow runs too), SIGKILL after `grace_s`."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _cli(args: Sequence[str], *, env: dict[str, str], log: Path) -> None:
    with log.open("ab") as out:
        done = subprocess.run(
            list(args), env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, timeout=180
        )
    if done.returncode != 0:
        raise RuntimeError(f"{args!r} exited {done.returncode}: {log.read_text()[-3000:]}")


def base_env(work: Path, *, api: str, database_url: str, landing_url: str) -> dict[str, str]:
    """What every process gets: Prefect under `work`, quiet, and the pipeline's settings."""
    home = work / "prefect"
    home.mkdir(parents=True, exist_ok=True)
    return os.environ | {
        "PREFECT_HOME": str(home),
        "PREFECT_API_URL": api,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "PREFECT_UI_ENABLED": "false",
        "PREFECT_UI_STATIC_DIRECTORY": str(home / "ui"),
        "PREFECT_LOGGING_LEVEL": "WARNING",
        "PREFECT_WORKER_QUERY_SECONDS": "1",
        "PREFECT_WORKER_PREFETCH_SECONDS": "2",
        "XDG_RUNTIME_DIR": str(home),
        "BIOBRIDGE_DATA_DIR": str(work / "data"),
        "BIOBRIDGE_DATABASE_URL": database_url,
        "BIOBRIDGE_LANDING_URL": landing_url,
        "BIOBRIDGE_CODE_DIR": str(ROOT),
        "BIOBRIDGE_CODE_VERSION": "scale-out-test",
        "PYTHONUNBUFFERED": "1",
    }


@contextmanager
def prefect_server(work: Path, *, env: dict[str, str], prefect_db_url: str) -> Iterator[str]:
    """A Prefect server on Postgres; yields its API URL."""
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = env | {
        "PREFECT_API_URL": api,
        "PREFECT_API_DATABASE_CONNECTION_URL": asyncpg_url(prefect_db_url),
    }
    log = work / "prefect-server.log"
    server_cmd = [sys.executable, "-m", "prefect", "server", "start"]
    args = [*server_cmd, "--host", "127.0.0.1", "--port", str(port)]
    with _process(args, env=env, log=log) as server:
        _wait_http(f"{api}/health", server, timeout_s=180, log=log)
        yield api


def deploy(running: Stack) -> None:
    """`prefect deploy` of deployments/prefect.yaml, once a worker has created the pool."""
    deadline = time.monotonic() + 120
    while httpx.get(f"{running.api}/work_pools/{POOL}", timeout=10).status_code != 200:
        if time.monotonic() > deadline:
            raise TimeoutError(f"no worker created the work pool {POOL!r} in 120 s")
        time.sleep(0.5)
    args = ["--no-prompt", "deploy", "--prefect-file", "deployments/prefect.yaml", "--all"]
    _cli([sys.executable, "-m", "prefect", *args], env=running.env, log=running.logs / "deploy.log")


@contextmanager
def scale_out(
    work: Path,
    *,
    database_url: str,
    landing_url: str,
    prefect_db_url: str,
    receivers: int,
    workers: int,
) -> Iterator[Stack]:
    """The whole topology: server, pool, deployment, `workers` workers, `receivers` receivers."""
    env = base_env(work, api="", database_url=database_url, landing_url=landing_url)
    with ExitStack() as stack:
        api = stack.enter_context(prefect_server(work, env=env, prefect_db_url=prefect_db_url))
        env["PREFECT_API_URL"] = api
        running = Stack(api=api, env=env, logs=work)
        start_workers(stack, running, workers)  # the first one creates the pool
        deploy(running)
        receiver_env = {k: v for k, v in env.items() if k not in PIPELINE_ONLY_ENV}
        for i in range(receivers):
            port = free_port()
            log = work / f"receiver-{i}.log"
            cli = [sys.executable, "-m", "deployments.cli", "receiver", "--port", str(port)]
            proc = stack.enter_context(_process(cli, env=receiver_env, log=log))
            url = f"http://127.0.0.1:{port}"
            _wait_http(f"{url}/readyz", proc, timeout_s=60, log=log)
            running.receivers.append(url)
        yield running


def start_workers(stack: ExitStack, running: Stack, workers: int) -> None:
    """`workers` process workers on the pool, each running one flow run at a time."""
    for i in range(workers):
        args = [sys.executable, "-m", "prefect", "worker", "start", "--pool", POOL,
                "--type", "process", "--limit", "1", "--name", f"worker-{i}"]  # fmt: skip
        log = running.logs / f"worker-{i}.log"
        running.workers.append(stack.enter_context(_process(args, env=running.env, log=log)))
