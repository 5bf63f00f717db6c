"""`biobridge metrics`: scraped over real HTTP, the numbers are Postgres's at scrape time."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import httpx
from prometheus_client.parser import text_string_to_metric_families

from ops.metrics import serve_metrics
from tests.helpers import free_port
from tests.pipeline import Pipeline
from tests.test_ingest import generic_body, land_raw


@contextmanager
def metrics_server(url: str) -> Iterator[str]:
    port = free_port()
    server, thread = serve_metrics(lambda: url, host="127.0.0.1", port=port)
    try:
        yield f"http://127.0.0.1:{port}/metrics"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def scrape(endpoint: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = httpx.get(endpoint, timeout=30)
    assert response.status_code == 200
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def test_scrape_reports_backlog_rows_quarantine_and_loads(pipeline: Pipeline) -> None:
    with metrics_server(pipeline.db_url) as endpoint:
        before = scrape(endpoint)
        assert before[("biobridge_database_up", ())] == 1
        assert before[("biobridge_backlog_files", ())] == 0
        assert ("biobridge_lag_seconds", (("quantile", "0.5"),)) not in before

        assert pipeline.post("oura", generic_body("u_metrics")).status_code == 202
        bad = land_raw(pipeline, "whoop", b"\x00\x01 not json")
        assert pipeline.ingest().is_completed()
        after = scrape(endpoint)  # same server: the numbers come from Postgres per scrape

    rows = pipeline.scalar("SELECT count(*) FROM biometric_events WHERE user_id = 'u_metrics'")
    assert rows > 0
    assert after[("biobridge_rows_loaded", (("vendor", "oura"),))] == rows
    assert after[("biobridge_load_rows_total", (("outcome", "inserted"),))] == rows
    assert after[("biobridge_files", (("state", "loaded"), ("vendor", "oura")))] == 1
    assert after[("biobridge_files", (("state", "quarantined"), ("vendor", "whoop")))] == 1
    assert after[("biobridge_quarantine_entries", (("state", "open"), ("vendor", "whoop")))] == 1
    assert after[("biobridge_loads_total", (("status", "completed"),))] == 1
    assert after[("biobridge_backlog_files", ())] == 0
    assert after[("biobridge_lag_seconds", (("quantile", "0.95"),))] >= 0
    assert ("biobridge_last_completed_load_timestamp_seconds", ()) in after
    assert bad.startswith("raw/whoop/")


def test_pending_file_shows_as_backlog_with_its_age(pipeline: Pipeline) -> None:
    from datetime import UTC, datetime, timedelta

    from tests.test_verify import land_at
    from warehouse.ledger import record_discovered
    from warehouse.postgres import connect

    old = land_at(pipeline, "oura", generic_body("u_old"), datetime.now(UTC) - timedelta(hours=2))
    with connect(pipeline.db_url) as conn:
        assert record_discovered(conn, [old]) == 1
    with metrics_server(pipeline.db_url) as endpoint:
        values = scrape(endpoint)
    assert values[("biobridge_backlog_files", ())] == 1
    assert 7000 < values[("biobridge_backlog_oldest_age_seconds", ())] < 7400


def test_unreachable_database_is_database_up_zero_not_a_failed_scrape() -> None:
    url = f"postgresql://nobody:test-only-secret@127.0.0.1:{free_port()}/none"
    with metrics_server(url) as endpoint:
        response = httpx.get(endpoint, timeout=30)
    assert response.status_code == 200
    assert "biobridge_database_up 0.0" in response.text
    assert "test-only-secret" not in response.text
