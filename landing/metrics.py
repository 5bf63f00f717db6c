"""The receiver's Prometheus metrics: webhook requests by vendor and status, landing latency.

The access log (`landing/access_log.py`) hands each finished request's fields to `observe`;
`GET /metrics` serves them in Prometheus' text format. Only `/webhooks/...` requests count, and
the vendor label is a routed vendor or "unknown" (never the raw path: no unbounded labels).
The pipeline's own metrics (backlog, lag, rows loaded) are `biobridge metrics` (ops/metrics.py).

Counts are per receiver process: with `BIOBRIDGE_WORKERS` > 1 a scrape reads the worker that
answers it (run one worker per scrape target, or use the access log for exact totals).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString
from starlette.requests import Request
from starlette.responses import Response

REGISTRY = CollectorRegistry(auto_describe=True)
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
_PREFIX = "/webhooks/"
# Counted in plain dicts (a few dict operations per request: prometheus_client's labelled
# children cost several times that) and turned into metric families when scraped.
_requests: dict[tuple[str, int], int] = {}
_latency: dict[str, list[float]] = {}  # vendor: observations per bucket (+Inf last), then sum


def observe(fields: dict[str, Any]) -> None:
    """Count one finished request from its access-log fields (path, vendor, status, duration)."""
    if not fields["path"].startswith(_PREFIX):
        return
    vendor = fields["vendor"] or "unknown"
    key = (vendor, fields["status"] or 0)
    _requests[key] = _requests.get(key, 0) + 1
    counts = _latency.get(vendor)
    if counts is None:
        counts = _latency[vendor] = [0.0] * (len(BUCKETS) + 2)
    seconds = fields["duration_ms"] / 1000
    counts[bisect.bisect_left(BUCKETS, seconds)] += 1
    counts[-1] += seconds


class _Receiver(Collector):
    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "biobridge_receiver_requests",
            "Webhook requests answered, by vendor and HTTP status.",
            labels=["vendor", "status"],
        )
        for (vendor, status), n in sorted(_requests.items()):
            requests.add_metric([vendor, str(status)], n)
        yield requests
        latency = HistogramMetricFamily(
            "biobridge_receiver_landing_seconds",
            "Time from request start to the answer (202: the body is stored), by vendor.",
            labels=["vendor"],
        )
        for vendor, counts in sorted(_latency.items()):
            buckets, total = [], 0.0
            for bound, seen in zip([*map(floatToGoString, BUCKETS), "+Inf"], counts, strict=False):
                total += seen
                buckets.append((bound, total))
            latency.add_metric([vendor], buckets, counts[-1])
        yield latency


REGISTRY.register(_Receiver())


async def metrics_endpoint(_request: Request) -> Response:
    """`GET /metrics`: this process's counters in Prometheus' text format."""
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
