"""The Prefect tasks of the ingest flow: thin wrappers that name, log and retry the plain stages.

Only small values cross task boundaries (ids, specs, counts); the data stays inside a batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.tasks import exponential_backoff

from landing.settings import get_settings
from tasks import ledger
from tasks.batch import BatchSpec, process_batch
from tasks.discover import discover, settle_window
from tasks.load import LoadCounts
from tasks.migrate import apply_migrations
from tasks.postgres import connect
from tasks.retry import retry_if_transient
from tasks.runtime import database_url, landing_store

IO_RETRIES: dict[str, Any] = {
    "retries": 4,
    "retry_delay_seconds": exponential_backoff(backoff_factor=2),
    "retry_jitter_factor": 0.5,
    "retry_condition_fn": retry_if_transient,
    "cache_policy": NO_CACHE,
}


@task(name="migrate-database", **IO_RETRIES)
def migrate_database() -> list[str]:
    """Apply pending SQL migrations (idempotent; serialised across processes)."""
    applied = apply_migrations(database_url())
    get_run_logger().info("migrations applied: %s", applied or "none pending")
    return applied


@task(name="open-load-record", **IO_RETRIES)
def open_load(*, kind: str, flow_run_id: str | None, code_version: str) -> int:
    """Create this run's load record; every row it loads points back at it."""
    with connect(database_url()) as conn:
        if closed := ledger.close_abandoned_loads(conn):
            get_run_logger().warning("marked %d abandoned load records as failed", closed)
        return ledger.start_load(
            conn, flow_run_id=flow_run_id, kind=kind, code_version=code_version
        )


@task(name="requeue-for-replay", **IO_RETRIES)
def requeue_files(
    *,
    load_id: int,
    vendors: Sequence[str],
    states: Sequence[str],
    received_from: datetime | None,
    received_until: datetime | None,
) -> int:
    """Put already processed files back in the queue so this run loads them again."""
    with connect(database_url()) as conn:
        n = ledger.requeue(
            conn,
            load_id=load_id,
            vendors=vendors,
            states=states,
            received_from=received_from,
            received_until=received_until,
        )
    get_run_logger().info("requeued %d files (states %s)", n, ",".join(states))
    return n


@task(name="discover-landed-files", **IO_RETRIES)
def discover_files(
    *, vendors: Sequence[str], window: tuple[datetime | None, datetime | None] | None
) -> dict[str, int]:
    """List new objects in the landing store and add them to the ledger as pending."""
    with connect(database_url()) as conn:
        settle = settle_window(get_settings().ack_deadline_s)
        found = discover(conn, landing_store(), vendors=vendors, window=window, settle=settle)
    get_run_logger().info("discovered %d new files: %s", sum(found.values()), found)
    return found


@task(name="load-batch", **IO_RETRIES)
def load_batch(*, load_id: int, spec: BatchSpec) -> LoadCounts | None:
    """Claim up to spec.limit pending files and load them in one transaction."""
    with connect(database_url()) as conn:
        counts = process_batch(conn, landing_store(), load_id=load_id, spec=spec)
    if counts is not None:
        get_run_logger().info(
            "batch: %d files (%d loaded, %d quarantined, %d deferred); rows %d inserted, "
            "%d updated, %d unchanged; %d records quarantined",
            counts.files_read,
            counts.files_loaded,
            counts.files_quarantined,
            counts.files_deferred,
            counts.rows_inserted,
            counts.rows_updated,
            counts.rows_unchanged,
            counts.records_quarantined,
        )
    return counts


@task(name="close-load-record", **IO_RETRIES)
def close_load(*, load_id: int, status: str, error: str | None, drift: str) -> dict[str, object]:
    """Mark the load finished (completed or failed) and return what Postgres recorded."""
    with connect(database_url()) as conn:
        return ledger.finish_load(conn, load_id, status=status, error=error, drift=drift)
