"""Keep a fixed number of task runs in flight, and stop them the same way for every flow.

The backlog's batches and a chunked replay's chunks are both "claim the next piece until none is
left": a sliding window, not lock-step rounds, so one piece reads and flattens while another's
write keeps Postgres busy.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from prefect.exceptions import TerminationSignal
from prefect.futures import PrefectFuture, as_completed, wait

from warehouse.errors import cancelled_query

R = TypeVar("R")

# How long a stopping run waits for the pieces in flight before it abandons them (they roll back
# and their files stay pending): `biobridge up` must stop within a few seconds of Ctrl-C.
STOP_GRACE_S = 3.0


def keep_in_flight(
    submit: Callable[[], PrefectFuture[R | None]],
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
            finished = next(as_completed(in_flight))
            in_flight.remove(finished)
            result = finished.result()
            if result is not None:
                take(result)
                in_flight.append(submit())
    except BaseException as exc:
        stop()
        if stop_signal(exc) is not None:
            wait(in_flight, timeout=stop_grace_s)
        else:
            wait(in_flight)
        raise


def stop_signal(error: BaseException) -> BaseException | None:
    """The TerminationSignal or KeyboardInterrupt behind `error`, if a signal caused it (a signal
    raised inside a lock's wait can surface as "RuntimeError: release unlocked lock", and one
    that reached a query on the main thread as the query's cancellation, SQLSTATE 57014)."""
    seen: BaseException | None = error
    for _ in range(10):
        if seen is None:
            return None
        if isinstance(seen, TerminationSignal | KeyboardInterrupt):
            return seen
        if cancelled_query(seen):  # the SIGINT reached a query on the main thread (ADBC)
            return KeyboardInterrupt()
        seen = seen.__context__
    return None
