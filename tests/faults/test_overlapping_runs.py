"""Issue 4.6: a scheduled run and a backfill over the same window at the same time share the
backlog: each file is loaded by exactly one of them. Their upserts take turns across processes."""

from __future__ import annotations

import subprocess
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from tests.faults.helpers import (
    ROWS_PER_GENERIC_FILE,
    assert_accounted,
    child_env,
    land_at,
    python,
    wait_for,
)
from tests.helpers import WAITING_ADVISORY_LOCKS
from tests.pipeline import Pipeline
from tests.test_ingest import GENERIC

pytestmark = pytest.mark.slow

FILES = 240


def test_scheduled_run_and_backfill_at_once_load_each_file_once(pipeline: Pipeline) -> None:
    now = datetime.now(UTC)
    start = now - timedelta(minutes=50)
    for i in range(FILES):
        # Users and days repeat across files, so both runs upsert the same keys at once.
        body = {
            **GENERIC,
            "user_id": f"ov{i % 10}",
            "timestamp": f"2026-10-{1 + i % 24:02d}T06:00:00Z",
        }
        land_at(pipeline.store, "oura", orjson.dumps(body), start + timedelta(seconds=12 * i))

    with ThreadPoolExecutor(max_workers=2) as pool:
        scheduled = pool.submit(pipeline.ingest, mode="scheduled", batch_files=10, workers=2)
        backfill = pool.submit(
            pipeline.ingest,
            mode="backfill",
            received_from=now - timedelta(hours=1),
            received_until=now,
            batch_files=10,
            workers=2,
        )
        states = [scheduled.result(timeout=120), backfill.result(timeout=120)]
    assert all(s.is_completed() for s in states), [s.message for s in states]
    loads = [s.result() for s in states]
    print("files read (scheduled, backfill):", [load["files_read"] for load in loads])
    assert sum(load["files_read"] for load in loads) == FILES

    distinct = len({(i % 10, i % 24) for i in range(FILES)}) * ROWS_PER_GENERIC_FILE
    assert pipeline.scalar("SELECT count(*) FROM biometric_events") == distinct
    assert sum(load["rows_inserted"] for load in loads) == distinct
    assert_accounted(pipeline)


def test_upserts_of_two_loader_processes_wait_for_one_lock_and_load_each_file_once(
    pipeline: Pipeline,
) -> None:
    """The upsert lock holds across processes: while this test holds it, two loader processes
    both stop at their upsert (nothing is written); released, they load every file once."""
    from tasks.load import UPSERT_LOCK
    from warehouse.postgres import connect

    start = datetime.now(UTC) - timedelta(minutes=30)
    for i in range(FILES):
        body = {**GENERIC, "user_id": f"lk{i % 10}", "timestamp": f"2026-09-{1 + i % 24:02d}"}
        land_at(pipeline.store, "oura", orjson.dumps(body), start + timedelta(seconds=i))

    def waiting_pids() -> set[int]:
        rows = pipeline.query(f"SELECT pid {WAITING_ADVISORY_LOCKS}")
        return {int(pid) for (pid,) in rows}

    env = child_env(BIOBRIDGE_DATABASE_URL=pipeline.db_url)
    argv = [python(), "-m", "tests.faults.load_child", "--batch-files", "20"]
    with connect(pipeline.db_url, autocommit=True) as holder:
        with holder.cursor() as cur:
            cur.execute("SELECT pg_advisory_lock($1)", (UPSERT_LOCK,))
            cur.fetchall()
        children = [
            subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, text=True) for _ in range(2)
        ]
        try:
            wait_for(
                lambda: len(waiting_pids()) == 2,
                timeout=120,
                what="both loader processes to wait for the upsert lock",
            )
            assert pipeline.scalar("SELECT count(*) FROM biometric_events") == 0
        finally:
            with holder.cursor() as cur:
                cur.execute("SELECT pg_advisory_unlock($1)", (UPSERT_LOCK,))
                cur.fetchall()
        outputs = [child.communicate(timeout=120)[0] for child in children]
    assert [child.returncode for child in children] == [0, 0], outputs
    files_read = [int(out.strip().rsplit("=", 1)[1]) for out in outputs]
    print("files read per process:", files_read)
    assert sum(files_read) == FILES and all(files_read)
    distinct = len({(i % 10, i % 24) for i in range(FILES)}) * ROWS_PER_GENERIC_FILE
    assert pipeline.scalar("SELECT count(*) FROM biometric_events") == distinct
    assert_accounted(pipeline)
