"""The logger and the run id of the ingest run in progress, under Prefect or bare (no Prefect).

A run under Prefect (a deployment, `biobridge up`, the CLI with a Prefect server reachable) logs
through Prefect's run logger and has a flow run id. A bare run (`biobridge ingest` with no
server: the same flow body as plain functions, `flows.bare`) logs through `logging` and has no
run id. The steps ask here instead of importing Prefect, so a bare run never imports it (~2.5 s).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

BARE_LOGGER = "biobridge.run"
"""The logger of bare runs; a step's lines go to its child named after the step."""

_bare: ContextVar[bool] = ContextVar("biobridge_bare_run", default=False)
_step: ContextVar[str | None] = ContextVar("biobridge_bare_step", default=None)


@contextmanager
def bare_run() -> Iterator[None]:
    """Within this context (and the threads started with a copy of it), the run is bare."""
    token = _bare.set(True)
    try:
        yield
    finally:
        _bare.reset(token)


@contextmanager
def bare_step(name: str) -> Iterator[None]:
    """Within this context, a bare run's log lines name the step `name`."""
    token = _step.set(name)
    try:
        yield
    finally:
        _step.reset(token)


def is_bare() -> bool:
    """Whether the current run executes without Prefect."""
    return _bare.get()


def run_logger() -> logging.Logger | logging.LoggerAdapter[Any]:
    """The current run's logger: Prefect's run logger, or `biobridge.run[.<step>]` when bare."""
    if _bare.get():
        step = _step.get()
        return logging.getLogger(f"{BARE_LOGGER}.{step}" if step else BARE_LOGGER)
    from prefect import get_run_logger

    return get_run_logger()


def run_id() -> str | None:
    """The current run's Prefect flow run id (None for a bare run)."""
    if _bare.get():
        return None
    from prefect.runtime import flow_run

    return flow_run.get_id()
