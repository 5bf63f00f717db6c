"""A bare run: the ingest flow's body (`flows.body`) without Prefect, for `biobridge ingest`
when no Prefect server is reachable.

The same steps, retries, load record, report, counts and exit paths as the Prefect flow, with
the steps as plain calls and the batches on a small thread pool (`tasks.steps.bare_steps`);
logs go through `logging` (`biobridge.run`). No Prefect import and no API server: the run pays
its imports (~1.5 s) and its work. What only Prefect has (artifacts, the trends artifact, the
events automations watch, run tags) is skipped; the report is logged instead.
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from flows.body import gc_frozen, run_body
from flows.in_flight import Terminated
from flows.params import IngestParams
from flows.report import RunFindings
from schemas.loads import LoadRecord
from tasks.run_context import BARE_LOGGER, bare_run
from tasks.settings import get_pipeline_settings
from tasks.steps import bare_steps

SKIPPED = (
    "no Prefect server: the run's artifacts, the ingest-trends artifact and the events the "
    "automations watch are not published (the report is in this log); runs under `biobridge up` "
    "publish them"
)


def run_bare(params: IngestParams) -> tuple[LoadRecord, RunFindings]:
    """Run the ingest in this process without Prefect; the load record and its findings. A
    failure raises (the load record is closed as failed first), as does a stop: Ctrl-C raises
    KeyboardInterrupt, SIGTERM ends the process by that signal once the record is closed."""
    # The batches, and the discovery that runs beside them.
    threads = params.chunk_parallel if params.chunk_hours else params.workers + 1
    with (
        capture_sigterm(),
        bare_run(),
        gc_frozen(),
        bare_steps(get_pipeline_settings(), threads=threads) as steps,
    ):
        load, found = run_body(steps, params)
        logging.getLogger(BARE_LOGGER).info(SKIPPED)
    return load, found


@contextmanager
def capture_sigterm() -> Iterator[None]:
    """SIGTERM raises `Terminated` while the run lasts, so the run closes its load record as
    stopped (as Prefect's engine does with its TerminationSignal); then the signal is delivered
    again to the handler before ours, the default one ending the process."""
    try:
        previous = signal.signal(signal.SIGTERM, _raise_terminated) or signal.SIG_DFL
    except ValueError:  # not the main thread (a test's thread): signals stay as they are
        previous = None
    try:
        yield
    except Terminated:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
            os.kill(os.getpid(), signal.SIGTERM)
        raise
    finally:
        if previous is not None and signal.getsignal(signal.SIGTERM) is _raise_terminated:
            signal.signal(signal.SIGTERM, previous)


def _raise_terminated(signum: int, _frame: FrameType | None) -> None:
    raise Terminated(signum)
