"""Shared by the fault tests: landing bodies, child processes, and the closing accounting check."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from landing.store import ObjectStore
from ops.verify import VerifyReport, verify
from tests.helpers import free_port, land
from tests.pipeline import Pipeline
from warehouse.postgres import connect

ROOT = Path(__file__).resolve().parents[2]
ROWS_PER_GENERIC_FILE = 7  # deployments/examples/generic_daily_readiness.json flattens to 7


def land_at(
    store: ObjectStore, vendor: str, body: bytes, at: datetime, *, delivery_id: str = "test"
) -> str:
    """Put a body in the store as if the receiver had landed it at `at`; returns its key."""
    return land(store, vendor, body, at=at, delivery_id=delivery_id)


def child_env(**extra: str) -> dict[str, str]:
    """The environment of a child process: ours (the test's settings) plus `extra`."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1", **extra}
    return env


def python() -> str:
    """The interpreter of the test run (uv's virtual environment)."""
    return sys.executable


def wait_for(predicate: Callable[[], bool], *, timeout: float, what: str) -> None:
    """Poll `predicate` every 20 ms until it is true; fail naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.02)


def execute(db_url: str, sql: str, params: tuple[Any, ...] | None = None) -> None:
    """Run one statement and commit it."""
    with connect(db_url) as conn:
        with conn.cursor() as cur:
            cur.execute(sql, params)
        conn.commit()


def assert_accounted(p: Pipeline, *, store: ObjectStore | None = None) -> VerifyReport:
    """The closing check of every fault test: `verify` is clean, nothing is pending, no
    measurement appears twice, and every file was written by exactly one committed batch."""
    with connect(p.db_url) as conn:
        report = verify(conn, store or p.store)
    assert report.ok, "\n".join(map(str, report.discrepancies[:20]))
    assert report.duplicate_keys == 0
    assert report.keys_lost == 0
    states = p.query("SELECT state, count(*) FROM biobridge.landed_files GROUP BY 1")
    assert "pending" not in dict(states), states
    total, distinct = p.query(
        "SELECT count(*), count(DISTINCT (user_id, device_type, metric_type, timestamp)) "
        "FROM biometric_events"
    )[0]
    assert total == distinct
    # Every ledger write bumps `attempts` in the batch's transaction: 1 means exactly one batch
    # committed each file, whatever was killed or rolled back before.
    assert p.query("SELECT DISTINCT attempts FROM biobridge.landed_files") == [(1,)]
    # Load records count what their committed batches wrote: summed, each file once.
    files = p.scalar("SELECT count(*) FROM biobridge.landed_files")
    read = p.scalar("SELECT coalesce(sum(files_read), 0) FROM biobridge.loads")
    assert read == files, f"load records count {read} files read, the ledger has {files}"
    return report


@contextmanager
def receiver_child(**env: str) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """`biobridge receiver` as a child process on a free port; killed on exit."""
    port = free_port()
    proc = subprocess.Popen(
        [python(), "-m", "deployments.cli", "receiver", "--port", str(port)],
        env=child_env(**env),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for(up, timeout=30, what="the receiver to listen")
        yield proc, url
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
