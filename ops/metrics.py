"""Prometheus metrics of the pipeline, read from Postgres at scrape time (`biobridge metrics`).

A custom collector: every scrape runs a few aggregate queries on the ledger, so the numbers are
always Postgres's, whichever process loaded the rows. A database that cannot be reached is
`biobridge_database_up 0` (and nothing else), never a failed scrape.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from threading import Thread
from typing import Any
from wsgiref.simple_server import WSGIServer

from prometheus_client import start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from warehouse.postgres import Connection, Dsn, connect, with_connect_timeout
from warehouse.quarantine import oldest_pending

log = logging.getLogger(__name__)


class PipelineCollector(Collector):
    """Backlog, lag, rows loaded, quarantine and notifications, queried on each scrape."""

    def __init__(self, url: Callable[[], Dsn]) -> None:
        self._url = url

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("biobridge_database_up", "1 if the scrape could query Postgres")
        try:
            with connect(with_connect_timeout(self._url(), 5)) as conn:
                metrics = list(_metrics(conn))
        except Exception as exc:  # noqa: BLE001 - a scrape reports the outage, never fails
            log.warning("metrics: could not query Postgres: %s", exc)  # connect() masks secrets
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from metrics


def _rows(conn: Connection, sql: str) -> list[tuple[Any, ...]]:
    with conn.cursor() as cur:
        cur.execute(sql)
        return list(cur.fetchall())


def _metrics(conn: Connection) -> Iterator[Metric]:
    now = datetime.now(UTC)
    files = GaugeMetricFamily(
        "biobridge_files",
        "Landed files in the ledger by vendor and state",
        labels=["vendor", "state"],
    )
    for vendor, state, n in _rows(
        conn, "SELECT vendor, state, count(*) FROM biobridge.landed_files GROUP BY 1, 2"
    ):
        files.add_metric([vendor, state], int(n))
    yield files

    pending, oldest = oldest_pending(conn)
    backlog = GaugeMetricFamily("biobridge_backlog_files", "Files waiting to be loaded")
    backlog.add_metric([], int(pending))
    yield backlog
    age = GaugeMetricFamily(
        "biobridge_backlog_oldest_age_seconds",
        "Seconds since the oldest pending file was received (0: nothing pending)",
    )
    age.add_metric([], 0.0 if oldest is None else max(0.0, (now - oldest).total_seconds()))
    yield age

    lag = GaugeMetricFamily(
        "biobridge_lag_seconds",
        "Landing-to-load lag of the files settled in the last hour, by quantile",
        labels=["quantile"],
    )
    p50, p95, settled = _rows(
        conn,
        "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM loaded_at - "
        "received_at)), percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM "
        "loaded_at - received_at)), count(*) FROM biobridge.landed_files "
        "WHERE state IN ('loaded', 'quarantined') "
        "AND loaded_at >= now() - interval '1 hour'",
    )[0]
    if settled:
        lag.add_metric(["0.5"], float(p50))
        lag.add_metric(["0.95"], float(p95))
    yield lag

    rows = GaugeMetricFamily(
        "biobridge_rows_loaded",
        "Rows attributed to loaded files, by vendor (a replay replaces a file's rows)",
        labels=["vendor"],
    )
    for vendor, n in _rows(
        conn,
        "SELECT vendor, coalesce(sum(rows_loaded), 0) FROM biobridge.landed_files "
        "WHERE state = 'loaded' GROUP BY 1",
    ):
        rows.add_metric([vendor], int(n))
    yield rows

    totals = _rows(
        conn,
        "SELECT coalesce(sum(rows_inserted), 0), coalesce(sum(rows_updated), 0), "
        "coalesce(sum(rows_unchanged), 0), coalesce(sum(records_quarantined), 0) "
        "FROM biobridge.loads",
    )[0]
    load_rows = CounterMetricFamily(
        "biobridge_load_rows", "Rows written by all loads, by outcome", labels=["outcome"]
    )
    for outcome, n in zip(("inserted", "updated", "unchanged"), totals[:3], strict=True):
        load_rows.add_metric([outcome], int(n))
    yield load_rows
    records = CounterMetricFamily(
        "biobridge_records_quarantined", "Records quarantined by all loads"
    )
    records.add_metric([], int(totals[3]))
    yield records

    loads = CounterMetricFamily("biobridge_loads", "Load records by status", labels=["status"])
    for status, n in _rows(conn, "SELECT status, count(*) FROM biobridge.loads GROUP BY 1"):
        loads.add_metric([status], int(n))
    yield loads
    (last_ok,) = _rows(
        conn,
        "SELECT extract(epoch FROM max(finished_at)) FROM biobridge.loads "
        "WHERE status = 'completed'",
    )[0]
    last = GaugeMetricFamily(
        "biobridge_last_completed_load_timestamp_seconds",
        "When the last completed load finished (Unix time; absent before the first)",
    )
    if last_ok is not None:
        last.add_metric([], float(last_ok))
    yield last

    quarantine = GaugeMetricFamily(
        "biobridge_quarantine_entries",
        "Quarantine entries by vendor, open (not replayed) or replayed",
        labels=["vendor", "state"],
    )
    for vendor, state, n in _rows(
        conn,
        "SELECT f.vendor, CASE WHEN q.replayed_at IS NULL THEN 'open' ELSE 'replayed' END, "
        "count(*) FROM biobridge.quarantine q JOIN biobridge.landed_files f USING (object_key) "
        "GROUP BY 1, 2",
    ):
        quarantine.add_metric([vendor, state], int(n))
    yield quarantine

    notes = GaugeMetricFamily(
        "biobridge_notifications",
        "Pointer notifications by vendor and state",
        labels=["vendor", "state"],
    )
    for vendor, state, n in _rows(
        conn, "SELECT vendor, state, count(*) FROM biobridge.notifications GROUP BY 1, 2"
    ):
        notes.add_metric([vendor, state], int(n))
    yield notes
    conn.rollback()


def serve_metrics(
    url: Callable[[], Dsn], *, host: str = "127.0.0.1", port: int = 9464
) -> tuple[WSGIServer, Thread]:
    """Serve `/metrics` on host:port from a background thread; stop with `server.shutdown()`."""
    registry = CollectorRegistry()
    registry.register(PipelineCollector(url))
    server, thread = start_http_server(port, addr=host, registry=registry)
    return server, thread
