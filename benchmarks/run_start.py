"""How long `biobridge ingest` takes to start its run, and what it adds to the flow's own time,
while `biobridge up` runs (issue 11 "no start-up tax", issue 12 "runs start within a few seconds").

    uv run python benchmarks/run_start.py [--tries 3] [--database-url URL]

Starts `biobridge up` on a throwaway data dir and a throwaway database (both removed at the end),
lands one small webhook before each try, runs `biobridge ingest --mode backfill` and prints, per
try:
- to Running: from the command's start to the run's start_time as the Prefect server has it;
- the command's wall time minus the flow's own time: its load record's finished_at - started_at
  (the load's work), and the run's end_time - start_time in Prefect (also the flow's migrate
  check before the load and its report after).
Then, for runs started from the UI (the runner's path: a Scheduled run, its poll, a flow-run
process), from the run's creation to its start_time, over as many tries.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx

from landing.settings import Settings
from landing.store import open_store
from tests.helpers import land
from warehouse.postgres import connect, url_with_database

CLI = [sys.executable, "-c", "from deployments.cli import main; raise SystemExit(main())"]
BODY = (
    Path(__file__).parents[1] / "deployments/examples/generic_daily_readiness.json"
).read_bytes()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def admin(server_url: str, statement: str) -> None:
    with connect(server_url, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(statement)


def one_try(env: dict[str, str], api: str, db_url: str, i: int) -> tuple[float, float, float]:
    settings = Settings(data_dir=Path(env["BIOBRIDGE_DATA_DIR"]))
    store = open_store(settings.landing_location(), settings)
    land(store, "oura", BODY.replace(b"athlete_", f"bench{i}_".encode(), 1))
    began = datetime.now(UTC)
    t0 = time.monotonic()
    done = subprocess.run(
        [*CLI, "ingest", "--mode", "backfill"], env=env, capture_output=True, text=True, check=False
    )
    wall = time.monotonic() - t0
    if done.returncode != 0:
        raise SystemExit(f"ingest failed:\n{done.stdout}\n{done.stderr}")
    run_id = done.stdout.split("/runs/flow-run/")[1].split()[0]
    run = httpx.get(f"{api}/flow_runs/{run_id}", timeout=10).json()
    to_running = (datetime.fromisoformat(run["start_time"]) - began).total_seconds()
    run_s = (
        datetime.fromisoformat(run["end_time"]) - datetime.fromisoformat(run["start_time"])
    ).total_seconds()
    with connect(db_url) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT extract(epoch FROM finished_at - started_at) FROM biobridge.loads "
            "WHERE flow_run_id = $1",
            (run_id,),
        )
        (flow_s,) = cur.fetchone()
    return to_running, wall - float(flow_s), wall - run_s


def ui_try(api: str, deployment: str) -> float:
    """A run created as the UI's "Run" button does; seconds from its creation to Running."""
    dep = httpx.get(f"{api}/deployments/name/{deployment}", timeout=10).json()
    created = httpx.post(f"{api}/deployments/{dep['id']}/create_flow_run", json={}, timeout=30)
    run_id = created.json()["id"]
    while (run := httpx.get(f"{api}/flow_runs/{run_id}", timeout=10).json())["end_time"] is None:
        time.sleep(0.5)
    return (
        datetime.fromisoformat(run["start_time"]) - datetime.fromisoformat(run["created"])
    ).total_seconds()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--tries", type=int, default=3)
    p.add_argument("--database-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = p.parse_args(argv)
    name = f"bb_bench_{secrets.token_hex(6)}"
    admin(args.database_url, f"CREATE DATABASE {name}")
    db_url = url_with_database(args.database_url, name)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            env = {
                k: v for k, v in os.environ.items() if not k.startswith(("BIOBRIDGE_", "PREFECT_"))
            }
            env |= {
                "BIOBRIDGE_DATA_DIR": str(Path(tmp) / "data"),
                "BIOBRIDGE_DATABASE_URL": db_url,
                "BIOBRIDGE_PORT": str(free_port()),
                "BIOBRIDGE_INGEST_INTERVAL_S": "3600",
            }
            log = (Path(tmp) / "up.log").open("wb")
            up = subprocess.Popen(
                [*CLI, "up", "--prefect-port", str(free_port())],
                env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
            try:
                stack_file = Path(env["BIOBRIDGE_DATA_DIR"]) / "stack.json"
                while not stack_file.exists():
                    if up.poll() is not None:
                        raise SystemExit((Path(tmp) / "up.log").read_text()[-3000:])
                    time.sleep(0.5)
                info = json.loads(stack_file.read_text())
                api = info["api_url"]
                time.sleep(5)  # let the first scheduled run and the runner settle
                for i in range(args.tries):
                    to_running, overhead, over_run = one_try(env, api, db_url, i)
                    print(
                        f"try {i + 1}: to Running {to_running:4.1f}s   "
                        f"wall - load record's time {overhead:4.1f}s   "
                        f"wall - run's Running time {over_run:4.1f}s",
                        flush=True,
                    )
                for i in range(args.tries):
                    print(f"UI run {i + 1}: to Running {ui_try(api, info['deployment']):4.1f}s")
            finally:
                os.killpg(up.pid, signal.SIGINT)
                up.wait(timeout=60)
    finally:
        admin(args.database_url, f"DROP DATABASE {name} WITH (FORCE)")


if __name__ == "__main__":
    main()
