"""The ingest flow: landed webhook bodies become validated, flattened rows in Postgres.

It only orchestrates: migrate, open a load record, (requeue for a replay,) discover new files,
load batches on `workers` parallel connections until nothing is left to claim, close the load
record with its counts, and publish the report. Every stage lives in `tasks/`.
"""

from __future__ import annotations

import gc
import json
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from prefect import State, flow, get_client, get_run_logger
from prefect.runtime import flow_run
from prefect.states import Completed

from flows.alerts import emit_run_events
from flows.in_flight import keep_in_flight, stop_signal
from flows.params import IngestParams
from flows.replay import run_chunked
from flows.report import WARNING_STATE_NAME, RunFindings, findings, publish
from flows.trends import publish_trends
from flows.version import code_version
from schemas.loads import LOAD_TOTALS, LoadCounts, LoadRecord
from tasks.batch import BatchSpec
from tasks.runtime import database_url
from tasks.settings import get_pipeline_settings
from tasks.steps import IngestTasks, ingest_tasks
from warehouse.ledger import load_liveness
from warehouse.postgres import connect
from warehouse.quarantine import oldest_pending, quarantined_files

DEFAULT_PARAMS = IngestParams()


@flow(
    name="ingest-landed-webhooks",
    log_prints=False,
    description="Load landed webhook bodies into Postgres (validated, flattened, with lineage).",
)
def ingest(params: IngestParams = DEFAULT_PARAMS) -> Any:
    """Load what the receiver landed; returns the load record as Postgres has it.

    The run ends Completed, or "Completed with warnings" (a Completed state with that name, a
    message saying why, and tags) when it quarantined records, saw schema drift or left a
    backlog older than `BIOBRIDGE_HEALTH_MAX_PENDING_AGE_S`; the load record is its result.
    """
    with gc_frozen():
        return run_flow(params or IngestParams())


@contextmanager
def gc_frozen() -> Iterator[None]:
    """Exempt what exists now (modules, Prefect's and pydantic's state: ~175k objects) from the
    cyclic collector while the run lasts: otherwise each full collection the batches' garbage
    triggers walks all of it (~20% of reading and planning's CPU, measured). Collected first,
    so no garbage is kept; unfrozen after, so a long-lived process (tests, the demo) is as
    before."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def run_flow(params: IngestParams) -> Any:
    """The body of `ingest`."""
    steps = ingest_tasks(get_pipeline_settings())
    steps.migrate_database()
    # While this connection holds the load's liveness lock (taken before the record exists), no
    # other run takes the load for abandoned; if this process dies, the next run marks it failed.
    with load_liveness(database_url()) as load_id:
        steps.open_load(
            load_id=load_id,
            kind=params.mode,
            flow_run_id=flow_run.get_id(),
            code_version=code_version(),
        )
        counts = LoadCounts()
        discovered = 0
        try:
            counts.fetch = steps.fetch_notifications(load_id=load_id, vendors=params.vendors)
            if params.chunk_hours:
                discovered = run_chunked(steps, params, load_id=load_id, counts=counts)
            else:
                discovered = find_files(steps, params, load_id=load_id)
                spec = BatchSpec(
                    limit=params.batch_files,
                    vendors=tuple(params.vendors),
                    received_from=params.received_from,
                    received_until=params.received_until,
                )
                keep_in_flight(
                    lambda: steps.load_batch.submit(load_id=load_id, spec=spec),
                    slots=params.workers,
                    take=counts.add,
                )
        except BaseException as exc:
            if stop_signal(exc) is not None:
                ignore_further_stop_signals()  # the terminal's SIGINT, then the runner's SIGTERM
            close_and_report(steps, load_id, counts, discovered, error=exc)
            if (signalled := stop_signal(exc)) is not None and signalled is not exc:
                raise signalled from None  # the run ends Crashed/Cancelled, not Failed
            raise
        load, found = close_and_report(steps, load_id, counts, discovered, error=None)
    publish_trends()  # the ingest-trends artifact; never raises
    emit_run_events(load)  # events the automations watch; never raises
    return final_state(load, found)


def final_state(load: LoadRecord, found: RunFindings) -> State[Any]:
    """Completed, or Completed named "Completed with warnings" with the reasons as its message
    (the run list, the dashboard and automations can tell them apart); the load is the result."""
    totals = (
        f"load {load['load_id']}: {load['files_read']} files read, {load['rows_inserted']} rows "
        f"inserted, {load['rows_updated']} updated, {load['rows_unchanged']} unchanged, "
        f"{load['records_quarantined']} records quarantined"
    )
    if not found.warnings:
        return Completed(message=totals, data=load)
    tag_run(found.tags)
    return Completed(name=WARNING_STATE_NAME, message=found.message(), data=load)


def tag_run(tags: list[str]) -> None:
    """Add `tags` to this flow run (filters in the UI and automations match on them)."""
    run_id = flow_run.get_id()
    if not run_id:
        return
    try:
        with get_client(sync_client=True) as client:
            current = client.read_flow_run(UUID(run_id)).tags
            client.update_flow_run(UUID(run_id), tags=sorted({*current, *tags}))
    except Exception as exc:  # noqa: BLE001 - tags are a convenience; the state says it all
        get_run_logger().warning("could not tag the run %s: %s", tags, exc)


def ignore_further_stop_signals() -> None:
    """While a stopping run closes its load record, a second signal (a Ctrl-C reaches the run
    from the terminal, then the runner's cancel sends SIGTERM) must not abort the close: the
    record would stay 'running' with no reason. `biobridge up` kills the run at its deadline."""
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    except ValueError:  # not the main thread (a flow called from a test's thread): nothing to do
        pass


def describe_error(error: BaseException) -> str:
    """The load record's reason: the exception, or what stopped the run when it has no text."""
    if (signalled := stop_signal(error)) is not None:
        return (
            f"stopped: the run received {_signal_name(signalled)} (Ctrl-C, biobridge up "
            "stopping, or the run was cancelled); committed batches stand, the other files stay "
            "pending and load on the next run"
        )
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


def _signal_name(error: BaseException) -> str:
    if isinstance(error, KeyboardInterrupt):
        return "SIGINT"
    number = getattr(error, "signal", None)
    try:
        return signal.Signals(number).name if number is not None else "a termination signal"
    except ValueError:
        return f"signal {number}"


def find_files(steps: IngestTasks, params: IngestParams, *, load_id: int) -> int:
    """Requeue the window's files for a replay, then discover new ones; how many were new."""
    if params.mode == "replay":
        steps.requeue_files(
            load_id=load_id,
            vendors=params.vendors,
            states=params.replay_states,
            received_from=params.received_from,
            received_until=params.received_until,
        )
    window = (params.received_from, params.received_until)
    found = steps.discover_files(
        vendors=params.vendors, window=None if params.mode == "scheduled" else window
    )
    return sum(found.values())


def close_and_report(
    steps: IngestTasks,
    load_id: int,
    counts: LoadCounts,
    discovered: int,
    *,
    error: BaseException | None,
) -> tuple[LoadRecord, RunFindings]:
    """Close the load record (completed, or failed with `error`), publish and log the report."""
    load = steps.close_load(
        load_id=load_id,
        status="completed" if error is None else "failed",
        error=None if error is None else describe_error(error),
        drift=json.dumps(dict(counts.drift)),
    )
    logger = get_run_logger()
    found = RunFindings()
    files = []
    try:
        settings = get_pipeline_settings()
        with connect(database_url()) as conn:
            _pending, oldest = oldest_pending(conn)
            if load["files_quarantined"] or load["records_quarantined"]:
                files = quarantined_files(conn, load_id=load_id, limit=200)
        age = None if oldest is None else (datetime.now(UTC) - oldest).total_seconds()
        found = findings(
            load, counts, backlog_age_s=age, max_age_s=settings.health_max_pending_age_s
        )
    except Exception as exc:  # noqa: BLE001 - the report must not fail a run that loaded
        logger.warning("could not gather the run's findings: %s", exc)
    if not publish(load, counts, discovered, files=files, found=found):
        logger.info("load %d: nothing new to load", load_id)
    if error is not None:
        logger.error(
            "load %d failed after %d files: %s", load_id, counts.files_read, describe_error(error)
        )
    else:
        totals = ", ".join(f"{name} {load[name]}" for name in LOAD_TOTALS)  # type: ignore[literal-required]
        logger.info("load %d: %s", load_id, totals)
        for warning in found.warnings:
            logger.warning("load %d: %s", load_id, warning)
    return load, found
