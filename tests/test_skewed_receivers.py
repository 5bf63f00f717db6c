"""Issue 14 (4a): discovery finds every landed object whatever the receivers' clocks say.

A receiver 15 minutes behind stamps keys and metadata 15 minutes in the past, so its bodies
land in partitions the discovery cursor has already passed. Scheduled runs still load them (the
sweep), on the local store and on S3, and `verify` and `health` judge age by the store's clock.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ops.verify import verify
from tests.helpers import land
from tests.pipeline import Pipeline
from tests.test_ingest import generic_body
from warehouse.postgres import connect

SKEW = timedelta(minutes=15)


@pytest.mark.parametrize("which", ["pipeline", "s3_pipeline"])
def test_a_receiver_15_min_behind_is_loaded_by_scheduled_runs(
    which: str, request: pytest.FixtureRequest
) -> None:
    p: Pipeline = request.getfixturevalue(which)
    on_time = [generic_body(f"u_on_time_{i}") for i in range(3)]
    for body in on_time:
        assert p.post("generic", body).status_code == 202
    assert p.ingest().is_completed()  # the cursor is now at now - settle (10 min)

    # The slow receiver: keys, partitions and metadata say 15 minutes ago, behind the cursor.
    skewed = [
        land(p.store, "generic", generic_body(f"u_skewed_{i}"), at=datetime.now(UTC) - SKEW)
        for i in range(4)
    ]
    assert p.post("generic", generic_body("u_after")).status_code == 202
    assert p.ingest().is_completed()  # a scheduled run, no backfill

    states = dict(
        p.query(
            "SELECT object_key, state FROM biobridge.landed_files "
            "WHERE object_key = ANY($1::text[])",
            ("{" + ",".join(skewed) + "}",),
        )
    )
    assert states == dict.fromkeys(skewed, "loaded")
    users = {u for (u,) in p.query("SELECT DISTINCT user_id FROM biometric_events")}
    assert users == {f"u_on_time_{i}" for i in range(3)} | {f"u_skewed_{i}" for i in range(4)} | {
        "u_after"
    }
    with connect(p.db_url) as conn:
        report = verify(conn, p.store)
    assert report.ok, [str(d) for d in report.discrepancies]
    assert report.objects_listed == 8
