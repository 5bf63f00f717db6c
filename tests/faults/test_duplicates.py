"""Issue 4.5: duplicate and out-of-order deliveries. One row per measurement; the delivery
that became known last wins (docs/ordering.md), whatever order the files are loaded in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.faults.helpers import ROWS_PER_GENERIC_FILE, assert_accounted, land_at
from tests.pipeline import Pipeline
from tests.test_ingest import generic_body

pytestmark = pytest.mark.slow


def rows_of(p: Pipeline, user: str) -> dict[str, tuple[float, str]]:
    return {
        metric: (value, key)
        for metric, value, key in p.query(
            "SELECT metric_type, value, source_key FROM biometric_events WHERE user_id = $1",
            (user,),
        )
    }


def test_same_webhook_delivered_20_times_is_one_row_per_measurement(pipeline: Pipeline) -> None:
    keys = []
    for _ in range(20):
        r = pipeline.post("oura", generic_body("u_twenty"), **{"x-delivery-id": "dlv-twenty"})
        assert r.status_code == 202
        keys.append(r.json()["object_key"])
    state = pipeline.ingest()
    assert state.is_completed(), state.message
    load = state.result()
    assert (load["files_loaded"], load["rows_inserted"]) == (20, ROWS_PER_GENERIC_FILE)
    rows = rows_of(pipeline, "u_twenty")
    assert len(rows) == ROWS_PER_GENERIC_FILE
    assert {key for _, key in rows.values()} == {max(keys)}  # the last received wins

    # The vendor retries once more: still one row each, now naming the newest delivery.
    again = pipeline.post("oura", generic_body("u_twenty"), **{"x-delivery-id": "dlv-twenty"})
    assert pipeline.ingest().is_completed()
    rows = rows_of(pipeline, "u_twenty")
    assert len(rows) == ROWS_PER_GENERIC_FILE
    assert {key for _, key in rows.values()} == {again.json()["object_key"]}
    assert_accounted(pipeline)


def test_deliveries_that_reach_the_store_later_win_whatever_their_stamp(
    pipeline: Pipeline,
) -> None:
    # Issue 14: "newest" is the order in which deliveries became known (the ledger's
    # delivery_seq), never the receivers' stamps, which a clock behind makes lie
    # (docs/ordering.md). This test once asserted the opposite: stamps older than the delivery
    # already loaded lost, which is how a slow receiver's correction was dropped.
    now = datetime.now(UTC)
    first, stamped_older = now - timedelta(hours=2), now - timedelta(hours=5)
    loaded = land_at(pipeline.store, "oura", generic_body("u_late", readiness_score=77), first)
    state = pipeline.ingest()  # the first scheduled run lists everything, then keeps a cursor
    assert state.is_completed(), state.message
    assert rows_of(pipeline, "u_late")["readiness_score"] == (77.0, loaded)

    # 20 deliveries arrive in the store afterwards, stamped hours earlier (receivers whose clocks
    # are behind): the next scheduled run's sweep finds them all the same (issue 14).
    later = [
        land_at(
            pipeline.store,
            "oura",
            generic_body("u_late", readiness_score=50),
            stamped_older + timedelta(seconds=i),
        )
        for i in range(20)
    ]
    state = pipeline.ingest()
    assert state.is_completed(), state.message
    load = state.result()
    # Deduplicated in the batch first: one value changed, six are the same measurements.
    assert (load["files_loaded"], load["rows_inserted"], load["rows_updated"]) == (20, 0, 1)
    assert load["rows_unchanged"] == ROWS_PER_GENERIC_FILE - 1
    # A backfill of the window then finds nothing new.
    state = pipeline.ingest(
        mode="backfill", received_from=now - timedelta(hours=6), received_until=now
    )
    assert state.is_completed() and state.result()["files_read"] == 0, state.message

    rows = rows_of(pipeline, "u_late")
    assert len(rows) == ROWS_PER_GENERIC_FILE
    assert rows["readiness_score"] == (50.0, later[-1])  # listed in key order: the last one
    assert {key for _, key in rows.values()} == {later[-1]}
    assert pipeline.scalar("SELECT count(*) FROM biobridge.landed_files") == 21
    report = assert_accounted(pipeline)
    assert report.keys_superseded == 20 * ROWS_PER_GENERIC_FILE
