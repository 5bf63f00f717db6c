"""The body of the ingest flow, as plain functions over a set of steps: the Prefect flow
(`flows.ingest`) runs it with its steps as Prefect tasks, a bare run (`flows.bare`) with plain
steps on a thread pool. Nothing here imports Prefect.

It only orchestrates: migrate, open a load record, (requeue for a replay,) discover new files,
load batches on `workers` parallel connections until nothing is left to claim, close the load
record with its counts, and report. Every stage lives in `tasks/`.
"""

from __future__ import annotations

import gc
import json
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from flows.in_flight import error_chain, is_finished, keep_in_flight, stop_signal
from flows.params import IngestParams
from flows.replay import run_chunked
from flows.report import RunFindings, findings, publish
from flows.version import code_version
from schemas.loads import LOAD_TOTALS, LoadCounts, LoadRecord
from tasks.batch import BatchSpec
from tasks.run_context import run_id, run_logger
from tasks.runtime import database_url
from tasks.settings import get_pipeline_settings
from tasks.steps import IngestTasks
from warehouse.ledger import load_liveness
from warehouse.postgres import connect, keeping_sessions
from warehouse.quarantine import oldest_pending, quarantined_files


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


def run_body(steps: IngestTasks, params: IngestParams) -> tuple[LoadRecord, RunFindings]:
    """Run the ingest with `steps`; the load record as Postgres has it and what is worth a
    warning. A stop signal ends the load record as stopped and is raised again."""
    with keeping_sessions():
        return _run_body(steps, params)


def _run_body(steps: IngestTasks, params: IngestParams) -> tuple[LoadRecord, RunFindings]:
    steps.migrate_database()
    # While this connection holds the load's liveness lock (taken before the record exists), no
    # other run takes the load for abandoned; if this process dies, the next run marks it failed.
    with load_liveness(database_url()) as load_id:
        with stop_signals_held() as held:
            steps.open_load(
                load_id=load_id, kind=params.mode, flow_run_id=run_id(), code_version=code_version()
            )
        counts = LoadCounts()
        discovered = 0
        try:
            for signum in held:  # a stop that came while the record was being opened
                signal.raise_signal(signum)
            counts.fetch = steps.fetch_notifications(load_id=load_id, vendors=params.vendors)
            if params.chunk_hours:
                discovered = run_chunked(steps, params, load_id=load_id, counts=counts)
            else:
                discovered = load_while_discovering(steps, params, load_id=load_id, counts=counts)
        except BaseException as exc:
            if stop_signal(exc) is not None:
                ignore_further_stop_signals()  # the terminal's SIGINT, then the runner's SIGTERM
            close_and_report(steps, load_id, counts, discovered, error=exc)
            if (signalled := stop_signal(exc)) is not None and signalled is not exc:
                raise signalled from None  # the run ends Crashed/Cancelled, not Failed
            raise
        return close_and_report(steps, load_id, counts, discovered, error=None)


@contextmanager
def stop_signals_held() -> Iterator[list[int]]:
    """Hold SIGINT/SIGTERM while the load record is being opened; the signals that came.

    The record exists once its INSERT commits, but the step returns only after Prefect has
    recorded the task's end (an API call): a Ctrl-C in between left a 'running' record that no
    `except` closed, until the next run marked it abandoned. The caller raises the held signals
    again inside its `try`. A second signal while held is not held: it acts at once (a stuck
    API server must not make Ctrl-C powerless)."""
    held: list[int] = []
    stops = (signal.SIGINT, signal.SIGTERM)

    def hold(signum: int, _frame: object) -> None:
        if held:
            restore()
            signal.raise_signal(signum)
            return
        held.append(signum)

    def restore() -> None:
        for signum, handler in previous.items():
            signal.signal(signum, handler)

    # A handler not set from Python (None) could not be put back: that signal is not held.
    previous = {s: h for s in stops if (h := signal.getsignal(s)) is not None}
    try:
        for signum in previous:
            signal.signal(signum, hold)
    except ValueError:  # not the main thread (a flow called from a test's thread): nothing held
        yield held
        return
    try:
        yield held
    finally:
        restore()


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
    if _output_closed(error):
        return (
            "stopped: the run's output was closed (whatever read the command's output, such as "
            "`| head`, ended); committed batches stand, the other files stay pending and load on "
            "the next run"
        )
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


def _output_closed(error: BaseException) -> bool:
    """Whether `error` is the SystemExit that rich (Prefect's console log handler) raises when
    the run's output is a pipe whose reader has gone: the record said only "SystemExit: 1"."""
    return any(
        isinstance(seen, SystemExit) and isinstance(seen.__context__, BrokenPipeError)
        for seen in error_chain(error)
    )


def _signal_name(error: BaseException) -> str:
    if isinstance(error, KeyboardInterrupt):
        return "SIGINT"
    number = getattr(error, "signal", None)
    try:
        return signal.Signals(number).name if number is not None else "a termination signal"
    except ValueError:
        return f"signal {number}"


def load_while_discovering(
    steps: IngestTasks, params: IngestParams, *, load_id: int, counts: LoadCounts
) -> int:
    """Requeue the window's files for a replay, then discover new files while `workers` batches
    load the ones already in the ledger (discovery commits as it lists: a large backlog starts
    loading within a chunk instead of after the whole listing); how many files were new."""
    if params.mode == "replay":
        steps.requeue_files(
            load_id=load_id,
            vendors=params.vendors,
            states=params.replay_states,
            received_from=params.received_from,
            received_until=params.received_until,
        )
    window = (params.received_from, params.received_until)
    halt = threading.Event()
    discovery = steps.discover_files.submit(
        vendors=params.vendors,
        window=None if params.mode == "scheduled" else window,
        stop=halt,
    )
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
        stop=halt.set,  # on an error or a stop the listing ends at its next chunk
        more_coming=lambda: not is_finished(discovery),
    )
    return sum(discovery.result().values())  # a failed discovery fails the run here


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
    logger = run_logger()
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
