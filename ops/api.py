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
from tasks.batch import BatchSpec
from tasks.discover import settle_window
from tasks.preview import ReplayPreview
from tasks.preview import preview_replay as run_preview
from tasks.runtime import database_url, landing_store
from tasks.settings import get_pipeline_settings
from warehouse.embedded_pg import embedded_tcp_url
from warehouse.errors import DatabaseError
from warehouse.migrate import apply_migrations
from warehouse.postgres import connect, display_url, with_connect_timeout
from warehouse.quarantine import (
    QuarantinedFile,
    QuarantineEntry,
    oldest_pending,
    quarantine_entries,
    quarantined_files,
)

OpsError = (DatabaseError, StoreError)
"""What an operation raises when the database or the store cannot be used (messages redacted)."""

__all__ = [
    "OpsError",
    "VerifyReport",
    "backlog_summary",
    "check_database",
    "check_health",
    "database_display_url",
    "database_is_embedded",
    "database_url",
    "lineage",
    "list_quarantine",
    "migrate",
    "preview_replay",
    "rows_per_metric",
    "show_quarantine",
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


def database_display_url(*, reveal: bool = False) -> str:
    """Where clients connect (banners, `biobridge db`), password masked unless `reveal`: the
    embedded server's TCP URL when it listens on TCP (BI tools), else the pipeline's URL."""
    url = database_url()
    settings = get_pipeline_settings()
    if settings.database_url is None and (tcp := embedded_tcp_url(settings.data_dir)):
        return tcp
    return url.get_secret_value() if reveal else display_url(url)


def database_is_embedded() -> bool:
    """True when no BIOBRIDGE_DATABASE_URL is set (the pipeline uses the embedded server)."""
    return get_pipeline_settings().database_url is None


def backlog_summary() -> tuple[int, datetime | None]:
    """Pending files in the ledger and the receipt time of the oldest."""
    with connect(database_url()) as conn:
        return oldest_pending(conn)


def list_quarantine(
    *, load_id: int | None, vendor: str | None, limit: int
) -> list[QuarantinedFile]:
    """Files with open quarantine entries, newest first."""
    with connect(database_url()) as conn:
        return quarantined_files(conn, load_id=load_id, vendor=vendor, limit=limit)


def show_quarantine(object_key: str) -> list[QuarantineEntry]:
    """Every quarantine entry of one landed object."""
    with connect(database_url()) as conn:
        return quarantine_entries(conn, object_key)


def load_of_flow_run(flow_run_id: str) -> dict[str, object] | None:
    """The load record of one flow run, as Postgres has it."""
    from warehouse.quarantine import load_of_flow_run as query

    with connect(database_url()) as conn:
        return query(conn, flow_run_id)


def check_database(timeout_s: int = 5) -> None:
    """Connect once (within `timeout_s`); raise DatabaseError with the reason if we cannot."""
    connect(with_connect_timeout(database_url(), timeout_s)).close()


def lineage(target: str, *, ui_url: str, limit: int) -> dict[str, Any]:
    """`ops.lineage.answer` over the configured database and store (LineageError: no match)."""
    from ops.lineage import answer

    with connect(database_url()) as conn:
        return answer(conn, landing_store, target, ui_url=ui_url, limit=limit)


def preview_replay(
    *,
    vendors: Sequence[str],
    states: Sequence[str],
    received_from: datetime | None,
    received_until: datetime | None,
    batch_files: int,
    code_version: str,
) -> ReplayPreview:
    """What `ingest --mode replay` would change, per vendor and metric; changes nothing."""
    spec = BatchSpec(
        limit=batch_files,
        vendors=tuple(vendors),
        received_from=received_from,
        received_until=received_until,
    )
    url = database_url()
    with connect(url) as conn:
        return run_preview(
            conn, landing_store(), spec=spec, states=states, code_version=code_version, url=url
        )
