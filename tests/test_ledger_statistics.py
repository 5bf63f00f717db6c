"""Issue 11: a large discovery refreshes the ledger's statistics, so the claim reads its index.

In a 1M-file run autovacuum never analyzed the ledger: the planner believed few files were
pending and each claim sorted all of them (1.1 s per batch at 860k pending). The threshold is
lowered here so that a few files stand for a large discovery.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from tests.helpers import land
from tests.pipeline import Pipeline
from tests.test_ingest import generic_body
from warehouse import ledger


def analyzed(pipeline: Pipeline) -> bool:
    """Whether the ledger has been ANALYZEd by hand (stats reach the view when a backend ends)."""
    for _ in range(20):
        if pipeline.scalar(
            "SELECT last_analyze IS NOT NULL FROM pg_stat_user_tables "
            "WHERE schemaname = 'biobridge' AND relname = 'landed_files'"
        ):
            return True
        time.sleep(0.25)
    return False


@pytest.mark.parametrize(("landed", "threshold", "expected"), [(3, 3, True), (2, 3, False)])
def test_discovering_many_files_analyzes_the_ledger(
    pipeline: Pipeline,
    monkeypatch: pytest.MonkeyPatch,
    landed: int,
    threshold: int,
    expected: bool,
) -> None:
    monkeypatch.setattr(ledger, "ANALYZE_AFTER_NEW_FILES", threshold)
    start = datetime.now(UTC) - timedelta(minutes=30)
    for i in range(landed):
        land(pipeline.store, "oura", generic_body(f"stats_{i}"), at=start + timedelta(seconds=i))
    state = pipeline.ingest()
    assert state.is_completed()
    assert state.result()["files_loaded"] == landed
    assert analyzed(pipeline) is expected
