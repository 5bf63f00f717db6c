"""The Prefect tasks of the ingest flow: thin wrappers that name, log and retry the plain stages.

Only small values cross task boundaries (ids, specs, counts); the data stays inside a batch.
Every task is declared here, once, with the one retry policy (`RetryPolicy`), which is built from
the pipeline settings when a flow run starts (`ingest_tasks`): the settings are read per run, so
a changed `BIOBRIDGE_IO_RETRIES` takes effect without re-importing anything.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import ParamSpec, TypeVar

from prefect import Task, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.tasks import exponential_backoff

from schemas.loads import FetchCounts, LoadCounts, LoadRecord
from tasks.batch import BatchSpec, process_batch
from tasks.discover import discover, settle_window
from tasks.fetch.limiter import VendorRateLimiter
from tasks.fetch.stage import FetchPolicy
from tasks.fetch.stage import fetch_notifications as run_fetch_stage
from tasks.replay import ChunkResult, command_key, plan_chunks, run_chunk
from tasks.retry import retry_if_transient
from tasks.runtime import database_url, landing_store
from tasks.settings import PipelineSettings, get_pipeline_settings
from tasks.vendor_settings import VendorApiSettings
from warehouse import ledger
from warehouse.migrate import apply_migrations
from warehouse.notifications import record_fetch_counts
from warehouse.postgres import connect
from warehouse.replay import ReplayRun, open_run, run_progress

P = ParamSpec("P")
R = TypeVar("R")


@dataclass(frozen=True)
class RetryPolicy:
    """How a pipeline step is retried after a transient failure (permanent ones fail at once)."""

    retries: int
    backoff_s: float
    jitter_factor: float = 0.5

    @classmethod
    def from_settings(cls, settings: PipelineSettings) -> RetryPolicy:
        """`BIOBRIDGE_IO_RETRIES` retries, the first after `BIOBRIDGE_RETRY_BACKOFF_S` seconds."""
        return cls(retries=settings.io_retries, backoff_s=settings.retry_backoff_s)

    def declare(self, fn: Callable[P, R], *, name: str) -> Task[P, R]:
        """`fn` as a Prefect task with this policy (exponential backoff with jitter)."""
        return task(
            name=name,
            retries=self.retries,
            retry_delay_seconds=exponential_backoff(backoff_factor=self.backoff_s),
            retry_jitter_factor=self.jitter_factor,
            retry_condition_fn=retry_if_transient,
            cache_policy=NO_CACHE,
        )(fn)


def migrate_database() -> list[str]:
    """Apply pending SQL migrations (idempotent; serialised across processes)."""
    applied = apply_migrations(database_url())
    get_run_logger().info("migrations applied: %s", applied or "none pending")
    return applied


def open_load(*, load_id: int, kind: str, flow_run_id: str | None, code_version: str) -> int:
    """Create this run's load record (its id reserved and locked by `ledger.load_liveness`);
    every row it loads points back at it. First close the records of runs that died."""
    with connect(database_url()) as conn:
        if closed := ledger.close_abandoned_loads(conn):
            get_run_logger().warning("marked %d abandoned load records as failed", closed)
        return ledger.start_load(
            conn, load_id=load_id, flow_run_id=flow_run_id, kind=kind, code_version=code_version
        )


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


def discover_files(
    *, vendors: Sequence[str], window: tuple[datetime | None, datetime | None] | None
) -> dict[str, int]:
    """List new objects in the landing store and add them to the ledger as pending."""
    with connect(database_url()) as conn:
        settings = get_pipeline_settings()
        found = discover(
            conn,
            landing_store(),
            vendors=vendors,
            window=window,
            settle=settle_window(settings.ack_deadline_s),
            sweep_keys=settings.discovery_sweep_keys,
        )
        if sum(found.values()) >= ledger.ANALYZE_AFTER_NEW_FILES:
            ledger.refresh_statistics(conn)
    get_run_logger().info("discovered %d new files: %s", sum(found.values()), found)
    return found


def fetch_notifications(*, load_id: int, vendors: Sequence[str]) -> FetchCounts:
    """Resolve due pointer notifications: fetch what they point at and land it as raw JSON."""
    settings = get_pipeline_settings()
    policy = FetchPolicy(
        retries=settings.io_retries, backoff_s=settings.retry_backoff_s, batch=settings.fetch_batch
    )
    url = database_url()
    with connect(url) as conn, connect(url) as tokens, connect(url) as limits:
        counts = run_fetch_stage(
            conn,
            tokens,
            landing_store(),
            apis=VendorApiSettings(),
            policy=policy,
            token_key=settings.token_encryption_key,
            load_id=load_id,
            vendors=vendors,
            limiter=VendorRateLimiter(limits),
        )
        record_fetch_counts(conn, load_id, json.dumps(counts.as_dict()))
    get_run_logger().info("fetch: %s", counts.summary())
    return counts


def load_batch(*, load_id: int, spec: BatchSpec) -> LoadCounts | None:
    """Claim up to spec.limit pending files and load them in one transaction."""
    with connect(database_url()) as conn:
        counts = process_batch(
            conn, landing_store(), load_id=load_id, spec=spec, url=database_url()
        )
    if counts is not None:
        get_run_logger().info("batch: %s", counts.summary())
    return counts


def open_replay_run(
    *,
    mode: str,
    vendors: Sequence[str],
    window: tuple[datetime, datetime],
    replay_states: Sequence[str],
    chunk_hours: int,
) -> ReplayRun:
    """Open the chunked run of this command with its chunks, or resume its unfinished one."""
    key = command_key(
        mode=mode,
        vendors=vendors,
        start=window[0],
        end=window[1],
        replay_states=replay_states,
        chunk_hours=chunk_hours,
    )
    chunks = plan_chunks(vendors, start=window[0], end=window[1], hours=chunk_hours)
    with connect(database_url()) as conn:
        run = open_run(
            conn,
            command_key=key,
            mode=mode,
            vendors=vendors,
            window=window,
            replay_states=replay_states,
            chunk_hours=chunk_hours,
            chunks=chunks,
        )
        done, total = run_progress(conn, run.run_id)
    get_run_logger().info(
        "chunked %s run %d (%s): %d of %d chunks done before this run", mode, run.run_id, key,
        done, total,
    )  # fmt: skip
    return run


def replay_chunk(*, run: ReplayRun, load_id: int, batch_files: int) -> ChunkResult | None:
    """Claim the next chunk of a chunked replay or backfill and load its files."""
    result = run_chunk(
        database_url(), landing_store(), run=run, load_id=load_id, batch_files=batch_files
    )
    if result is not None:
        c = result.chunk
        get_run_logger().info(
            "chunk %s %s..%s %s: %s", c.vendor, f"{c.chunk_from:%Y-%m-%d %H:%M}",
            f"{c.chunk_until:%Y-%m-%d %H:%M}", "done" if result.done else "stopped",
            result.counts.summary(),
        )  # fmt: skip
    return result


def close_load(*, load_id: int, status: str, error: str | None, drift: str) -> LoadRecord:
    """Mark the load finished (completed or failed) and return what Postgres recorded."""
    with connect(database_url()) as conn:
        return ledger.finish_load(conn, load_id, status=status, error=error, drift=drift)


@dataclass(frozen=True)
class IngestTasks:
    """The ingest flow's tasks, each declared with the run's retry policy."""

    migrate_database: Task[[], list[str]]
    open_load: Task[..., int]
    requeue_files: Task[..., int]
    discover_files: Task[..., dict[str, int]]
    fetch_notifications: Task[..., FetchCounts]
    load_batch: Task[..., LoadCounts | None]
    close_load: Task[..., LoadRecord]
    open_replay_run: Task[..., ReplayRun]
    replay_chunk: Task[..., ChunkResult | None]


def ingest_tasks(settings: PipelineSettings) -> IngestTasks:
    """Declare the ingest flow's tasks with the retry policy of `settings`."""
    policy = RetryPolicy.from_settings(settings)
    return IngestTasks(
        migrate_database=policy.declare(migrate_database, name="migrate-database"),
        open_load=policy.declare(open_load, name="open-load-record"),
        requeue_files=policy.declare(requeue_files, name="requeue-for-replay"),
        discover_files=policy.declare(discover_files, name="discover-landed-files"),
        fetch_notifications=policy.declare(fetch_notifications, name="fetch-notifications"),
        load_batch=policy.declare(load_batch, name="load-batch"),
        close_load=policy.declare(close_load, name="close-load-record"),
        open_replay_run=policy.declare(open_replay_run, name="open-chunked-run"),
        replay_chunk=policy.declare(replay_chunk, name="load-chunk"),
    )
