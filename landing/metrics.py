"""The receiver's Prometheus metrics: webhook requests by vendor and status, landing latency.

The access log (`landing/access_log.py`) hands each finished request's fields to `observe`;
`GET /metrics` serves them in Prometheus' text format. Only `/webhooks/...` requests count, and
the vendor label is a routed vendor or "unknown" (never the raw path: no unbounded labels).
The pipeline's own metrics (backlog, lag, rows loaded) are `biobridge metrics` (ops/metrics.py).

Counts are per receiver process: with `BIOBRIDGE_WORKERS` > 1 a scrape reads the worker that
answers it (run one worker per scrape target, or use the access log for exact totals).
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import Response

REGISTRY = CollectorRegistry(auto_describe=True)
REQUESTS = Counter(
    "biobridge_receiver_requests",
    "Webhook requests answered, by vendor and HTTP status.",
    ["vendor", "status"],
    registry=REGISTRY,
)
LATENCY = Histogram(
    "biobridge_receiver_landing_seconds",
    "Time from request start to the answer (202: the body is stored), by vendor.",
    ["vendor"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=REGISTRY,
)
_PREFIX = "/webhooks/"
_requests: dict[tuple[str, int], Any] = {}  # labelled children, cached: `labels()` costs more
_latency: dict[str, Any] = {}


def observe(fields: dict[str, Any]) -> None:
    """Count one finished request from its access-log fields (path, vendor, status, duration)."""
    if not fields["path"].startswith(_PREFIX):
        return
    vendor = fields["vendor"] or "unknown"
    status = fields["status"] or 0
    counter = _requests.get((vendor, status))
    if counter is None:
        counter = _requests[vendor, status] = REQUESTS.labels(vendor, str(status))
    counter.inc()
    histogram = _latency.get(vendor)
    if histogram is None:
        histogram = _latency[vendor] = LATENCY.labels(vendor)
    histogram.observe(fields["duration_ms"] / 1000)


async def metrics_endpoint(_request: Request) -> Response:
    """`GET /metrics`: this process's counters in Prometheus' text format."""
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
