"""Events the ingest flow emits at its end, for the automations in `deployments/automations.py`.

Prefect has no built-in event for "the quarantine rate is high" or "this vendor delivered", so
the run emits them (one call at the flow's end, failure-tolerant like the trends):

- `biobridge.ingest.succeeded` on resource `biobridge.pipeline`, every completed run;
- `biobridge.quarantine.rate-exceeded` when the run's share of quarantined files is above
  `BIOBRIDGE_ALERT_QUARANTINE_RATE`;
- `biobridge.backlog.stale` when the oldest pending file waited longer than
  `BIOBRIDGE_HEALTH_MAX_PENDING_AGE_S`;
- `biobridge.vendor.delivered` on resource `biobridge.vendor.<vendor>`, per vendor that had
  files settled by this run.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from prefect import get_run_logger
from prefect.events import emit_event

from schemas.loads import LoadRecord
from tasks.runtime import database_url
from tasks.settings import get_pipeline_settings
from warehouse.postgres import connect
from warehouse.quarantine import oldest_pending

PIPELINE = "biobridge.pipeline"
SUCCEEDED = "biobridge.ingest.succeeded"
QUARANTINE_RATE = "biobridge.quarantine.rate-exceeded"
BACKLOG_STALE = "biobridge.backlog.stale"
VENDOR_DELIVERED = "biobridge.vendor.delivered"


def vendor_resource(vendor: str) -> dict[str, str]:
    return {"prefect.resource.id": f"biobridge.vendor.{vendor}", "biobridge.vendor": vendor}


def quarantine_rate(load: LoadRecord) -> float | None:
    """Share of the run's settled files that were quarantined whole (None: none settled)."""
    settled = int(load["files_loaded"]) + int(load["files_quarantined"])
    return int(load["files_quarantined"]) / settled if settled else None


def emit_run_events(load: LoadRecord) -> list[str]:
    """Emit the run's events; returns their names. Never raises (a warning instead)."""
    emitted: list[str] = []
    try:
        settings = get_pipeline_settings()
        pipeline = {"prefect.resource.id": PIPELINE}
        with connect(database_url()) as conn:
            with conn.cursor() as cur:
                cur.execute(
                    "SELECT vendor, count(*) FROM biobridge.landed_files WHERE load_id = $1 "
                    "GROUP BY 1 ORDER BY 1",
                    (load["load_id"],),
                )
                vendors = [(str(v), int(n)) for v, n in cur.fetchall()]
            conn.rollback()
            pending, oldest = oldest_pending(conn)
        totals: dict[str, Any] = {"load_id": load["load_id"], "files_read": load["files_read"]}
        events: list[tuple[str, dict[str, str], dict[str, Any]]] = [(SUCCEEDED, pipeline, totals)]
        rate = quarantine_rate(load)
        if rate is not None and rate > settings.alert_quarantine_rate:
            payload = {**totals, "rate": rate, "threshold": settings.alert_quarantine_rate}
            events.append((QUARANTINE_RATE, pipeline, payload))
        age = None if oldest is None else (datetime.now(UTC) - oldest).total_seconds()
        if age is not None and age > settings.health_max_pending_age_s:
            payload = {"pending": pending, "oldest_age_s": age}
            events.append((BACKLOG_STALE, pipeline, payload))
        for vendor, files in vendors:
            events.append((VENDOR_DELIVERED, vendor_resource(vendor), {"files": files}))
        for name, resource, payload in events:
            if emit_event(event=name, resource=resource, payload=payload) is not None:
                emitted.append(name)
    except Exception as exc:  # noqa: BLE001 - alert events must not fail a run that loaded
        get_run_logger().warning("could not emit the run's alert events: %s", exc)
    return emitted
