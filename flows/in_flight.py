"""Keep a fixed number of steps in flight, and stop them the same way for every flow: Prefect
task runs under Prefect, plain futures on a thread pool in a bare run (`flows.bare`).

The backlog's batches and a chunked replay's chunks are both "claim the next piece until none is
left": a sliding window, not lock-step rounds, so one piece reads and flattens while another's
write keeps Postgres busy.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable
from concurrent import futures
from typing import TYPE_CHECKING, Any, TypeVar, cast

from warehouse.errors import cancelled_query

if TYPE_CHECKING:
    from tasks.steps import StepFuture

R = TypeVar("R")

# How long a stopping run waits for the pieces in flight before it abandons them (they roll back
# and their files stay pending): `biobridge up` must stop within a few seconds of Ctrl-C.
STOP_GRACE_S = 3.0


class Terminated(BaseException):
    """A SIGTERM stopping a bare run (`flows.bare`), as Prefect's TerminationSignal stops a run
    under Prefect: the run closes its load record as stopped, then the process dies of it."""

    def __init__(self, signum: int = signal.SIGTERM) -> None:
        super().__init__(f"received signal {signum}")
        self.signal = signum


def keep_in_flight(
    submit: Callable[[], StepFuture[R | None]],
    *,
    slots: int,
    take: Callable[[R], None],
    stop: Callable[[], None] = lambda: None,
    stop_grace_s: float = STOP_GRACE_S,
) -> None:
    """Keep `slots` runs of `submit` in flight; pass each result to `take` and refill its slot,
    until every slot has returned None (nothing left to claim).

    On an error, `stop` asks the pieces in flight to stop after their current step. A stop
    signal (Ctrl-C, a cancel) gives them `stop_grace_s` to commit, then abandons them: the
    process is ending and what has not committed rolls back. Any other error waits for them
    all, so the caller never closes its load record while a piece may still commit.
    """
    in_flight = [submit() for _ in range(slots)]
    try:
        while in_flight:
            finished = first_done(in_flight)
            in_flight.remove(finished)
            result = finished.result()
            if result is not None:
                take(result)
                in_flight.append(submit())
    except BaseException as exc:
        stop()
        if stop_signal(exc) is not None:
            wait_for(in_flight, timeout=stop_grace_s)
        else:
            wait_for(in_flight)
        raise


def first_done(in_flight: list[StepFuture[R]]) -> StepFuture[R]:
    """The first of `in_flight` to finish: Prefect futures under Prefect, plain ones when bare."""
    if isinstance(in_flight[0], futures.Future):
        plain = cast("list[futures.Future[R]]", in_flight)
        done, _ = futures.wait(plain, return_when=futures.FIRST_COMPLETED)
        return next(f for f in plain if f in done)  # the oldest of those done
    from prefect.futures import as_completed

    return cast("StepFuture[R]", next(as_completed(cast("list[Any]", in_flight))))


def wait_for(in_flight: list[StepFuture[R]], *, timeout: float | None = None) -> None:
    """Wait until every one of `in_flight` has finished, or `timeout` seconds."""
    if not in_flight:
        return
    if isinstance(in_flight[0], futures.Future):
        futures.wait(cast("list[futures.Future[R]]", in_flight), timeout=timeout)
        return
    from prefect.futures import wait

    wait(cast("list[Any]", in_flight), timeout=timeout)


def stop_signal(error: BaseException) -> BaseException | None:
    """The TerminationSignal (Terminated when bare) or KeyboardInterrupt behind `error`, if a
    signal caused it (a signal raised inside a lock's wait can surface as "RuntimeError: release
    unlocked lock", and one that reached a query on the main thread as the query's cancellation,
    SQLSTATE 57014)."""
    stops = _stop_types()
    seen: BaseException | None = error
    for _ in range(10):
        if seen is None:
            return None
        if isinstance(seen, stops):
            return seen
        if cancelled_query(seen):  # the SIGINT reached a query on the main thread (ADBC)
            return KeyboardInterrupt()
        seen = seen.__context__
    return None


def _stop_types() -> tuple[type[BaseException], ...]:
    """KeyboardInterrupt, Terminated, and Prefect's TerminationSignal when Prefect is loaded
    (when it is not, nothing can have raised one: a bare run does not import it)."""
    prefect_exceptions = sys.modules.get("prefect.exceptions")
    if prefect_exceptions is None:
        return (KeyboardInterrupt, Terminated)
    termination: type[BaseException] = prefect_exceptions.TerminationSignal
    return (KeyboardInterrupt, Terminated, termination)
