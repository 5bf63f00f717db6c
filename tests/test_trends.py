"""Trends: hourly SQL over the ledger (real Postgres), and the `ingest-trends` artifact of a run."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from flows.trends import TRENDS_KEY, publish_trends, render_trends, sparkline
from tests.pipeline import Pipeline
from tests.test_ingest import generic_body, land_raw
from warehouse.postgres import connect
from warehouse.trends import pipeline_trends

NOW = datetime(2026, 3, 4, 12, 30, tzinfo=UTC)


def settle(
    conn: object,
    key: str,
    vendor: str,
    *,
    received: datetime,
    loaded: datetime,
    state: str = "loaded",
    rows: int = 0,
    records_quarantined: int = 0,
) -> None:
    with conn.cursor() as cur:  # type: ignore[attr-defined]
        cur.execute(
            "INSERT INTO biobridge.landed_files (object_key, vendor, received_at, state, "
            "loaded_at, rows_loaded, records_quarantined) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            (key, vendor, received, state, loaded, rows, records_quarantined),
        )


def test_hourly_rows_lag_percentiles_and_quarantine_rate(pg_url: str) -> None:
    hour = NOW.replace(minute=0)
    with connect(pg_url) as conn:
        # Current hour: four oura files with lags 10, 20, 30, 40 s; one quarantined whole.
        for i, lag in enumerate((10, 20, 30, 40)):
            loaded = hour + timedelta(minutes=5 + i)
            settle(
                conn,
                f"o{i}",
                "oura",
                received=loaded - timedelta(seconds=lag),
                loaded=loaded,
                rows=7,
                state="quarantined" if i == 3 else "loaded",
            )
        # Two hours ago: a whoop file with some records quarantined, lag 1 h.
        loaded = hour - timedelta(hours=2) + timedelta(minutes=1)
        settle(
            conn,
            "w0",
            "whoop",
            received=loaded - timedelta(hours=1),
            loaded=loaded,
            rows=3,
            records_quarantined=2,
        )
        # Outside the window (25 h ago), after `now`, and still pending: all ignored.
        settle(
            conn,
            "old",
            "oura",
            received=hour - timedelta(hours=26),
            loaded=hour - timedelta(hours=25),
            rows=100,
        )
        settle(conn, "future", "oura", received=NOW, loaded=NOW + timedelta(minutes=5), rows=100)
        with conn.cursor() as cur:
            cur.execute(
                "INSERT INTO biobridge.landed_files (object_key, vendor, received_at) "
                "VALUES ('p', 'oura', $1)",
                (NOW,),
            )
        conn.commit()
        trends = pipeline_trends(conn, hours=24, now=NOW)

    assert len(trends.hours) == 24
    assert trends.hours[-1].hour == hour and trends.hours[0].hour == hour - timedelta(hours=23)
    last, two_ago = trends.hours[-1], trends.hours[-3]
    assert last.rows_by_vendor == {"oura": 21}  # the quarantined file's rows do not count
    assert last.files_settled == 4 and last.quarantine_rate == 0.25
    assert last.lag_p50_s == pytest.approx(25.0) and last.lag_p95_s == pytest.approx(38.5)
    assert two_ago.rows_by_vendor == {"whoop": 3} and two_ago.quarantine_rate == 1.0
    assert two_ago.lag_p50_s == pytest.approx(3600.0)
    assert trends.hours[-2].files_settled == 0 and trends.hours[-2].lag_p50_s is None
    assert trends.vendors == ["oura", "whoop"] and trends.rows_total("oura") == 21
    assert trends.quarantine_rate == pytest.approx(2 / 5)

    text = render_trends(trends)
    assert "| rows/h oura |" in text and "| rows/h whoop |" in text
    assert "| quarantine rate |" in text and "40.0%" in text
    oura_line = next(line for line in text.splitlines() if line.startswith("| rows/h oura"))
    assert oura_line.split("`")[1] == "▁" * 23 + "█"


def test_sparkline_scales_and_shows_gaps() -> None:
    assert sparkline([0.0, 1.0, 2.0, None, 4.0]) == "▁▃▅·█"
    assert sparkline([None, None]) == "··"
    assert sparkline([0.0, 0.0]) == "▁▁"


def test_ingest_run_publishes_trends_artifact(pipeline: Pipeline) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    assert pipeline.post("oura", generic_body("u_trend")).status_code == 202
    land_raw(pipeline, "whoop", b"\x00\x01 not json")
    state = pipeline.ingest()
    assert state.is_completed()
    run_id = state.state_details.flow_run_id
    with get_client(sync_client=True) as client:
        arts = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[TRENDS_KEY]))
        )
    mine = [a for a in arts if a.flow_run_id == run_id]
    assert len(mine) == 1
    text = str(mine[0].data)
    assert "| rows/h oura |" in text and "| quarantine rate |" in text
    assert "50.0%" in text  # one of the two files settled this hour was quarantined


def test_trends_error_is_a_warning_not_a_failure(pipeline: Pipeline) -> None:
    from prefect import flow

    @flow
    def publishes(hours: int) -> bool:
        return publish_trends(hours=hours)

    # hours=0 makes the query refuse (ValueError): the flow still completes, nothing published.
    state = publishes(0, return_state=True)
    assert state.is_completed() and state.result() is False
    assert publishes(24) is True
