"""What `biobridge ingest` adds to the flow's own time: in-process without a server (cold start
on an empty landing folder), and while `biobridge up` runs (issue 11 "no start-up tax", issue 12
"runs start within a few seconds").

    uv run python benchmarks/run_start.py [--tries 3] [--database-url URL]

Uses a throwaway data dir and a throwaway database (both removed at the end), migrated first.

1. In-process, no server (a bare run: the flow's body without Prefect): `--tries` runs of
   `biobridge ingest` on an empty landing folder (the flow then does almost nothing); per try
   the wall time, the load record's time (its work) and the command's peak RSS (VmHWM, sampled).
2. `biobridge up` on the same data dir; before each try one small webhook is landed, then
   `biobridge ingest --mode backfill`; per try:
   - to Running: from the command's start to the run's start_time as the Prefect server has it;
   - the command's wall time minus the flow's own time: its load record's finished_at -
     started_at (the load's work), and the run's end_time - start_time in Prefect (also the
     flow's migrate check before the load and its report after): the done-when of issue 11 is
     the latter <= 2 s;
   - the peak RSS of the process that executed the run (`up`'s standby).
   Alternating with each try, the same run in the command's own process on the stack's server
   (the way before the standby; PREFECT_API_URL spelled with `localhost` makes the command run
   it itself): the A/B of the standby in one run.
3. Runs started from the UI (the runner's path: a Scheduled run, its poll, a flow-run process):
   from the run's creation to its start_time, over as many tries.
A `RESULT {json}` line ends the output (medians).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psutil  # type: ignore[import-untyped]

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


def peak_rss_mib(pid: int) -> float:
    """The process's high-water RSS so far (VmHWM), in MiB; 0 once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    if "VmHWM:" not in status:  # it has exited (a zombie until its parent waits)
        return 0.0
    return int(status.split("VmHWM:")[1].split()[0]) / 1024


class HighWater:
    """Samples a process's VmHWM every 50 ms until it ends: the last sample is its peak."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak = pid, 0.0
        self.thread = threading.Thread(target=self._poll, daemon=True)
        self.thread.start()

    def _poll(self) -> None:
        while (now := peak_rss_mib(self.pid)) > 0:
            self.peak = max(self.peak, now)
            time.sleep(0.05)

    def result(self) -> float:
        self.thread.join(timeout=10)
        return self.peak


def load_seconds(db_url: str, run_id: str | None = None) -> float:
    """The work of the run's load (or of the last load): finished_at - started_at."""
    sql = "SELECT extract(epoch FROM finished_at - started_at) FROM biobridge.loads "
    with connect(db_url) as conn, conn.cursor() as cur:
        if run_id:
            cur.execute(sql + "WHERE flow_run_id = $1", (run_id,))
        else:
            cur.execute(sql + "ORDER BY load_id DESC LIMIT 1")
        row = cur.fetchone()
    assert row is not None, "the run has no load record"
    return float(row[0])


def cold_try(env: dict[str, str], db_url: str) -> tuple[float, float, float]:
    """`biobridge ingest` without a server on an empty landing folder: wall, work, peak RSS."""
    t0 = time.monotonic()
    proc = subprocess.Popen(
        [*CLI, "ingest"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    rss = HighWater(proc.pid)
    out, _ = proc.communicate()
    wall = time.monotonic() - t0
    if proc.returncode != 0:
        raise SystemExit(f"ingest failed:\n{out}")
    return wall, load_seconds(db_url), rss.result()


def standby_pid(up_pid: int) -> int | None:
    """The idle standby of `up` that will execute the next CLI run (the newest one)."""
    found = [
        p
        for p in psutil.Process(up_pid).children()
        if any("deployments.runhost" in arg for arg in p.cmdline())
    ]
    return max(found, key=lambda p: p.create_time()).pid if found else None


def one_try(
    env: dict[str, str], api: str, db_url: str, tag: str, up_pid: int, *, standby: bool
) -> tuple[float, float, float, float]:
    """One `ingest --mode backfill` of one landed file on the stack: by `up`'s standby, or (the
    way before it, for an A/B in the same run) in the command's own process: PREFECT_API_URL
    spelled with `localhost` is not the stack's URL, so the command runs the flow itself."""
    settings = Settings(data_dir=Path(env["BIOBRIDGE_DATA_DIR"]))
    store = open_store(settings.landing_location(), settings)
    land(store, "oura", BODY.replace(b"athlete_", f"bench{tag}_".encode(), 1))
    if not standby:
        env = env | {"PREFECT_API_URL": api.replace("127.0.0.1", "localhost")}
    executor = standby_pid(up_pid) if standby else None
    began = datetime.now(UTC)
    t0 = time.monotonic()
    proc = subprocess.Popen(
        [*CLI, "ingest", "--mode", "backfill"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    rss = HighWater(executor or proc.pid)
    out, err = proc.communicate()
    wall = time.monotonic() - t0
    if proc.returncode != 0:
        raise SystemExit(f"ingest failed:\n{out}\n{err}")
    run_id = out.split("/runs/flow-run/")[1].split()[0]
    run = httpx.get(f"{api}/flow_runs/{run_id}", timeout=10).json()
    to_running = (datetime.fromisoformat(run["start_time"]) - began).total_seconds()
    run_s = (
        datetime.fromisoformat(run["end_time"]) - datetime.fromisoformat(run["start_time"])
    ).total_seconds()
    executed_by = int(str(run["infrastructure_pid"]).rpartition(":")[2])
    peak = rss.result() if executed_by == (executor or proc.pid) else float("nan")
    return to_running, wall - load_seconds(db_url, run_id), wall - run_s, peak


def ui_try(api: str, deployment: str) -> float:
    """A run created as the UI's "Run" button does; seconds from its creation to Running."""
    dep = httpx.get(f"{api}/deployments/name/{deployment}", timeout=10).json()
    url = f"{api}/deployments/{dep['id']}/create_flow_run"
    for _ in range(10):  # a busy server's SQLite is locked now and then (5xx, 429): retry
        created = httpx.post(url, json={}, timeout=30)
        if created.status_code < 500 and created.status_code != 429:
            break
        time.sleep(1)
    if created.status_code not in (200, 201):
        raise RuntimeError(f"creating a run: HTTP {created.status_code} {created.text[:300]}")
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
    result: dict[str, Any] = {}
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
            subprocess.run([*CLI, "migrate"], env=env, check=True, capture_output=True)
            cold = []
            for i in range(args.tries):
                wall, work, peak = cold_try(env, db_url)
                cold.append((wall, work, peak))
                print(
                    f"in-process try {i + 1}: wall {wall:4.1f}s   load's work {work:4.1f}s   "
                    f"wall - work {wall - work:4.1f}s   peak RSS {peak:4.0f} MiB",
                    flush=True,
                )
            result["in_process_wall_minus_work_s"] = round(
                statistics.median(w - k for w, k, _ in cold), 2
            )
            result["in_process_peak_rss_mib"] = round(statistics.median(p for *_, p in cold))
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
                time.sleep(8)  # the first scheduled run, the runner and the standby settle
                tries: dict[str, list[tuple[float, float, float, float]]] = {
                    "standby": [],
                    "in_process": [],
                }
                for i in range(args.tries):  # alternating: a busy machine disturbs both alike
                    for how in ("standby", "in_process"):
                        tries[how].append(
                            one_try(env, api, db_url, f"{how}{i}", up.pid,
                                    standby=how == "standby")
                        )  # fmt: skip
                        to_running, overhead, over_run, peak = tries[how][-1]
                        print(
                            f"on the stack, {how:10} try {i + 1}: to Running {to_running:4.1f}s   "
                            f"wall - load's work {overhead:4.1f}s   "
                            f"wall - run's Running time {over_run:4.1f}s   "
                            f"peak RSS of the run's process {peak:4.0f} MiB",
                            flush=True,
                        )
                        time.sleep(6)  # the next standby loads the flow (~3-4 s)
                keys = ("to_running_s", "wall_minus_load_s", "wall_minus_run_s", "peak_rss_mib")
                for how, done in tries.items():
                    for n, key in enumerate(keys):
                        result[f"stack_{how}_{key}"] = round(
                            statistics.median(t[n] for t in done), 2
                        )
                ui = []
                for i in range(args.tries):
                    ui.append(ui_try(api, info["deployment"]))
                    print(f"UI run {i + 1}: to Running {ui[-1]:4.1f}s")
                result["ui_to_running_s"] = round(statistics.median(ui), 2)
            finally:
                os.killpg(up.pid, signal.SIGINT)
                up.wait(timeout=60)
    finally:
        admin(args.database_url, f"DROP DATABASE {name} WITH (FORCE)")
    print(f"RESULT {json.dumps(result)}")


if __name__ == "__main__":
    main()
