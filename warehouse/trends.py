"""Pipeline trends over the last hours, computed by SQL from the ledger: data, never pictures.

`pipeline_trends` returns one bucket per hour (oldest first, the current hour last): rows loaded
per vendor, the landing-to-load lag p50/p95 of the files settled in that hour, and the quarantine
rate (the share of settled files that quarantined the whole file or some of its records).
Rendering is the caller's business (flows/trends.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from warehouse.postgres import Connection

_HOURLY = """
WITH hours AS (
    SELECT generate_series(
        date_trunc('hour', $1::timestamptz, 'UTC') - make_interval(hours => $2::int - 1),
        date_trunc('hour', $1::timestamptz, 'UTC'),
        interval '1 hour'
    ) AS hour
)
SELECT h.hour,
       count(f.object_key) AS settled,
       count(f.object_key) FILTER (
           WHERE f.state = 'quarantined' OR coalesce(f.records_quarantined, 0) > 0
       ) AS quarantined,
       percentile_cont(0.5) WITHIN GROUP (
           ORDER BY extract(epoch FROM f.loaded_at - f.received_at)) AS lag_p50,
       percentile_cont(0.95) WITHIN GROUP (
           ORDER BY extract(epoch FROM f.loaded_at - f.received_at)) AS lag_p95
FROM hours h
LEFT JOIN biobridge.landed_files f
    ON f.state IN ('loaded', 'quarantined')
   AND f.loaded_at >= h.hour AND f.loaded_at < h.hour + interval '1 hour'
   AND f.loaded_at <= $1::timestamptz
GROUP BY h.hour
ORDER BY h.hour
"""

_ROWS = """
SELECT date_trunc('hour', loaded_at, 'UTC') AS hour, vendor, sum(coalesce(rows_loaded, 0))::bigint
FROM biobridge.landed_files
WHERE state = 'loaded'
  AND loaded_at >= date_trunc('hour', $1::timestamptz, 'UTC') - make_interval(hours => $2::int - 1)
  AND loaded_at <= $1::timestamptz
GROUP BY 1, 2
"""


@dataclass(frozen=True)
class HourTrend:
    """One hour: rows loaded per vendor, settled and quarantining files, lag percentiles (s)."""

    hour: datetime
    rows_by_vendor: dict[str, int] = field(default_factory=dict)
    files_settled: int = 0
    files_quarantining: int = 0
    lag_p50_s: float | None = None
    lag_p95_s: float | None = None

    @property
    def quarantine_rate(self) -> float | None:
        """Share of files settled this hour that quarantined anything (None: none settled)."""
        return self.files_quarantining / self.files_settled if self.files_settled else None


@dataclass(frozen=True)
class Trends:
    """The last `hours` hours up to `until`, oldest first."""

    until: datetime
    hours: list[HourTrend]

    @property
    def vendors(self) -> list[str]:
        """Vendors that loaded rows in the window, by name."""
        return sorted({v for h in self.hours for v in h.rows_by_vendor})

    def rows_total(self, vendor: str) -> int:
        return sum(h.rows_by_vendor.get(vendor, 0) for h in self.hours)

    @property
    def quarantine_rate(self) -> float | None:
        """Share of the window's settled files that quarantined anything."""
        settled = sum(h.files_settled for h in self.hours)
        return sum(h.files_quarantining for h in self.hours) / settled if settled else None


def pipeline_trends(conn: Connection, *, hours: int = 24, now: datetime | None = None) -> Trends:
    """Hourly trends for the `hours` hours ending at `now` (the current hour included)."""
    if hours < 1:
        raise ValueError("hours must be at least 1")
    until = now or datetime.now(UTC)
    rows: dict[datetime, dict[str, int]] = {}
    with conn.cursor() as cur:
        cur.execute(_ROWS, (until, hours))
        for hour, vendor, total in cur.fetchall():
            rows.setdefault(hour, {})[vendor] = int(total)
        cur.execute(_HOURLY, (until, hours))
        hourly = cur.fetchall()
    conn.rollback()
    buckets = [
        HourTrend(
            hour=hour,
            rows_by_vendor=rows.get(hour, {}),
            files_settled=int(settled),
            files_quarantining=int(quarantined),
            lag_p50_s=None if p50 is None else float(p50),
            lag_p95_s=None if p95 is None else float(p95),
        )
        for hour, settled, quarantined, p50, p95 in hourly
    ]
    return Trends(until=until, hours=buckets)
