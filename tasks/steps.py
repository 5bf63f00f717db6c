"""The steps of the ingest flow: thin wrappers that name, log and retry the plain stages.

Only small values cross step boundaries (ids, specs, counts); the data stays inside a batch.
Every step is declared here, once, with the one retry policy (`RetryPolicy`), which is built from
the pipeline settings when a run starts: the settings are read per run, so a changed
`BIOBRIDGE_IO_RETRIES` takes effect without re-importing anything. One declaration, two runners:
`ingest_tasks` makes each step a Prefect task (runs under Prefect), `bare_steps` a `BareStep`
(`biobridge ingest` with no Prefect server: plain calls and a thread pool, Prefect not imported).
"""

from __future__ import annotations

import contextvars
import json
import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, Protocol, TypeVar, cast

from schemas.loads import FetchCounts, LoadCounts, LoadRecord
from tasks.batch import BatchSpec, process_batch
from tasks.discover import discover, settle_window
from tasks.fetch.limiter import VendorRateLimiter
from tasks.fetch.stage import FetchPolicy
from tasks.fetch.stage import fetch_notifications as run_fetch_stage
from tasks.replay import ChunkResult, command_key, plan_chunks, run_chunk
from tasks.retry import is_retryable, retry_if_transient
from tasks.run_context import bare_step, run_logger
from tasks.runtime import database_url, landing_store
from tasks.settings import PipelineSettings, get_pipeline_settings
from tasks.vendor_settings import VendorApiSettings
from warehouse import ledger
from warehouse.migrate import apply_migrations
from warehouse.notifications import record_fetch_counts
from warehouse.postgres import connect, session
from warehouse.replay import ReplayRun, open_run, run_progress

if TYPE_CHECKING:
    from prefect import Task

P = ParamSpec("P")
R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)


class StepFuture(Protocol[R_co]):
    """A submitted step: a Prefect future, or a `concurrent.futures.Future` of a bare run."""

    def result(self) -> R_co: ...


class Step(Protocol[R_co]):
    """A step as the flow body uses it: called (runs now, here) or submitted (runs in a pool)."""

    def __call__(self, *args: Any, **kwargs: Any) -> R_co: ...

    def submit(self, *args: Any, **kwargs: Any) -> StepFuture[R_co]: ...


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

    def delays(self) -> list[float]:
        """The wait before each retry: exponential backoff (Prefect's `exponential_backoff`)."""
        return [self.backoff_s * 2**n for n in range(min(self.retries, 50))]

    def declare(self, fn: Callable[P, R], *, name: str) -> Step[R]:
        """`fn` as a Prefect task with this policy (exponential backoff with jitter)."""
        from prefect import task
        from prefect.cache_policies import NO_CACHE

        declared: Task[P, R] = task(
            name=name,
            retries=self.retries,
            retry_delay_seconds=self.delays(),
            retry_jitter_factor=self.jitter_factor,
            retry_condition_fn=retry_if_transient,
            cache_policy=NO_CACHE,
        )(fn)
        return cast("Step[R]", declared)

    def bare(self, fn: Callable[P, R], *, name: str, pool: ThreadPoolExecutor) -> BareStep[R]:
        """`fn` as a plain step with this policy, submitted to `pool`."""
        return BareStep(cast("Callable[..., R]", fn), name=name, policy=self, pool=pool)


class BareStep(Generic[R]):
    """A step run without Prefect: the same retries (transient failures only, backoff with
    jitter), its log lines named after it; `submit` runs it on the run's thread pool in a copy
    of the caller's context (the run's logger), as Prefect's thread pool task runner does."""

    def __init__(
        self, fn: Callable[..., R], *, name: str, policy: RetryPolicy, pool: ThreadPoolExecutor
    ) -> None:
        self.fn, self.name, self.policy, self.pool = fn, name, policy, pool

    def __call__(self, *args: Any, **kwargs: Any) -> R:
        delays = self.policy.delays()
        with bare_step(self.name):
            attempt = 0
            while True:
                try:
                    return self.fn(*args, **kwargs)
                except Exception as exc:
                    if attempt == len(delays) or not is_retryable(exc):
                        raise
                    # Prefect's jitter keeps the mean and the upper bound; uniform does too.
                    wait = delays[attempt] * random.uniform(  # noqa: S311 - jitter, not secrets
                        1 - self.policy.jitter_factor, 1 + self.policy.jitter_factor
                    )
                    attempt += 1
                    run_logger().warning(
                        "%s failed (transient): %s: %s; retry %d/%d in %.2f s",
                        self.name, type(exc).__name__, exc, attempt, len(delays), wait,
                    )  # fmt: skip
                    time.sleep(wait)

    def submit(self, *args: Any, **kwargs: Any) -> Future[R]:
        context = contextvars.copy_context()
        return self.pool.submit(context.run, self, *args, **kwargs)


def migrate_database() -> list[str]:
    """Apply pending SQL migrations (idempotent; serialised across processes)."""
    applied = apply_migrations(database_url())
    run_logger().info("migrations applied: %s", applied or "none pending")
    return applied


def open_load(*, load_id: int, kind: str, flow_run_id: str | None, code_version: str) -> int:
    """Create this run's load record (its id reserved and locked by `ledger.load_liveness`);
    every row it loads points back at it. First close the records of runs that died."""
    with connect(database_url()) as conn:
        if closed := ledger.close_abandoned_loads(conn):
            run_logger().warning("marked %d abandoned load records as failed", closed)
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
    run_logger().info("requeued %d files (states %s)", n, ",".join(states))
    return n


def discover_files(
    *,
    vendors: Sequence[str],
    window: tuple[datetime | None, datetime | None] | None,
    stop: threading.Event | None = None,
) -> dict[str, int]:
    """List new objects in the landing store and add them to the ledger as pending, committed
    chunk by chunk (batches loading meanwhile claim them); `stop` ends the listing early."""
    with connect(database_url()) as conn:
        settings = get_pipeline_settings()
        found = discover(
            conn,
            landing_store(),
            vendors=vendors,
            window=window,
            settle=settle_window(settings.ack_deadline_s),
            sweep_keys=settings.discovery_sweep_keys,
            stop=stop.is_set if stop is not None else lambda: False,
        )
        if sum(found.values()) >= ledger.ANALYZE_AFTER_NEW_FILES:
            ledger.refresh_statistics(conn)
    run_logger().info("discovered %d new files: %s", sum(found.values()), found)
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
    run_logger().info("fetch: %s", counts.summary())
    return counts


def load_batch(*, load_id: int, spec: BatchSpec) -> LoadCounts | None:
    """Claim up to spec.limit pending files and load them in one transaction."""
    with session(database_url()) as conn:
        counts = process_batch(
            conn, landing_store(), load_id=load_id, spec=spec, url=database_url()
        )
    if counts is not None:
        run_logger().info("batch: %s", counts.summary())
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
    run_logger().info(
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
        run_logger().info(
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
    """The ingest flow's steps, each declared with the run's retry policy."""

    migrate_database: Step[list[str]]
    open_load: Step[int]
    requeue_files: Step[int]
    discover_files: Step[dict[str, int]]
    fetch_notifications: Step[FetchCounts]
    load_batch: Step[LoadCounts | None]
    close_load: Step[LoadRecord]
    open_replay_run: Step[ReplayRun]
    replay_chunk: Step[ChunkResult | None]


STEPS: dict[str, tuple[Callable[..., Any], str]] = {
    "migrate_database": (migrate_database, "migrate-database"),
    "open_load": (open_load, "open-load-record"),
    "requeue_files": (requeue_files, "requeue-for-replay"),
    "discover_files": (discover_files, "discover-landed-files"),
    "fetch_notifications": (fetch_notifications, "fetch-notifications"),
    "load_batch": (load_batch, "load-batch"),
    "close_load": (close_load, "close-load-record"),
    "open_replay_run": (open_replay_run, "open-chunked-run"),
    "replay_chunk": (replay_chunk, "load-chunk"),
}
"""Each step of `IngestTasks`: its function and its name (in the UI, in a bare run's log)."""


def ingest_tasks(settings: PipelineSettings) -> IngestTasks:
    """Declare the ingest flow's steps as Prefect tasks with the retry policy of `settings`."""
    policy = RetryPolicy.from_settings(settings)
    return IngestTasks(
        **{field: policy.declare(fn, name=name) for field, (fn, name) in STEPS.items()}
    )


@contextmanager
def bare_steps(settings: PipelineSettings, *, threads: int) -> Iterator[IngestTasks]:
    """The ingest flow's steps as `BareStep`s with the retry policy of `settings`, submitted to
    a pool of `threads`. On exit the pool drops what has not started and waits for what runs
    (as Prefect's thread pool task runner does at the end of a flow run)."""
    policy = RetryPolicy.from_settings(settings)
    pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="bare-step")
    try:
        yield IngestTasks(
            **{field: policy.bare(fn, name=name, pool=pool) for field, (fn, name) in STEPS.items()}
        )
    finally:
        pool.shutdown(cancel_futures=True)
