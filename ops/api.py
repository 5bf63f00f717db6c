"""The operations the CLI runs, each resolving the database and store from the settings.

The CLI (and `biobridge up` / `demo`) call these, never the stages or the warehouse directly.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from landing.store import StoreError
from ops.health import pipeline_health
from ops.verify import VerifyReport, verify
from tasks.discover import settle_window
from tasks.runtime import database_url, landing_store
from tasks.settings import get_pipeline_settings
from warehouse.errors import DatabaseError
from warehouse.migrate import apply_migrations
from warehouse.postgres import connect

OpsError = (DatabaseError, StoreError)
"""What an operation raises when the database or the store cannot be used (messages redacted)."""

__all__ = [
    "OpsError",
    "VerifyReport",
    "check_health",
    "database_url",
    "migrate",
    "rows_per_metric",
    "verify_accounting",
]


def migrate() -> list[str]:
    """Apply pending SQL migrations to the configured (or embedded) Postgres; their names."""
    return apply_migrations(database_url())


def verify_accounting(
    *,
    received_from: datetime | None,
    received_until: datetime | None,
    vendors: Sequence[str],
) -> VerifyReport:
    """`ops.verify.verify` over the configured database and store, with the settings' windows."""
    settings = get_pipeline_settings()
    with connect(database_url()) as conn:
        return verify(
            conn,
            landing_store(),
            received_from=received_from,
            received_until=received_until,
            vendors=vendors,
            settle=settle_window(settings.ack_deadline_s),
            grace=timedelta(seconds=2 * settings.ingest_interval_s),
        )


def check_health(*, max_pending_age_s: int | None = None) -> dict[str, Any]:
    """`ops.health.pipeline_health` of the configured stack; never raises."""
    max_age = max_pending_age_s or get_pipeline_settings().health_max_pending_age_s
    try:
        url = database_url()
    except DatabaseError as exc:  # the embedded server would not start; the message is redacted
        return {"ok": False, "problems": [f"database: {exc}"]}
    return pipeline_health(url, landing_store, max_pending_age=timedelta(seconds=max_age))


def rows_per_metric() -> list[tuple[str, str, str | None, int]]:
    """(device_type, metric_type, unit, rows) of `public.biometric_events`, for `demo`."""
    with connect(database_url()) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT device_type, metric_type, unit, count(*) FROM public.biometric_events "
            "GROUP BY 1, 2, 3 ORDER BY 1, 2"
        )
        return [(str(d), str(m), u, int(n)) for d, m, u, n in cur.fetchall()]
