"""Issue 4.6: a scheduled run and a backfill over the same window at the same time share the
backlog: each file is loaded by exactly one of them."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from tests.faults.helpers import ROWS_PER_GENERIC_FILE, assert_accounted, land_at
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
