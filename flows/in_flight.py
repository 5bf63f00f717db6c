"""Keep a fixed number of steps in flight, and stop them the same way for every flow: Prefect
task runs under Prefect, plain futures on a thread pool in a bare run (`flows.bare`).

The backlog's batches and a chunked replay's chunks are both "claim the next piece until none is
left": a sliding window, not lock-step rounds, so one piece reads and flattens while another's
write keeps Postgres busy.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
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


STOP_REQUESTED = threading.Event()
"""Set by `request_stop`: the loop below raises KeyboardInterrupt at its next turn, whether or
not the SIGINT sent with it took effect."""


def request_stop() -> None:
    """Stop this process's run as a Ctrl-C does, from another thread (the standby's Ctrl-C
    forwarder, the UI-cancel watcher): a SIGINT, and a flag the batch loop checks.

    The flag is there because the signal alone was seen to go unheeded: in 2 of 11 loops of the
    Ctrl-C stack test the standby's run went on loading 4,000 files after the Ctrl-C, its main
    thread waiting for the next batch as if no signal had come (py-spy). Where the signal went
    was not found: a KeyboardInterrupt raised while the main thread runs one of Prefect's
    callbacks ends in that callback's future, which nobody reads, is one candidate. The flag
    stops the run at the next batch boundary either way."""
    STOP_REQUESTED.set()
    os.kill(os.getpid(), signal.SIGINT)


IDLE_POLL_S = 0.2
"""How long a slot that found nothing to claim waits before it claims again, while more files
are still coming (discovery is committing them)."""


def keep_in_flight(
    submit: Callable[[], StepFuture[R | None]],
    *,
    slots: int,
    take: Callable[[R], None],
    stop: Callable[[], None] = lambda: None,
    stop_grace_s: float = STOP_GRACE_S,
    more_coming: Callable[[], bool] = lambda: False,
) -> None:
    """Keep `slots` runs of `submit` in flight; pass each result to `take` and refill its slot,
    until every slot has returned None (nothing left to claim) and `more_coming` says nothing
    more will come. A slot that finds nothing while more is coming claims again after
    `IDLE_POLL_S`.

    On an error, `stop` asks the pieces in flight to stop after their current step. A stop
    signal (Ctrl-C, a cancel) gives them `stop_grace_s` to commit, then abandons them: the
    process is ending and what has not committed rolls back. Any other error waits for them
    all, so the caller never closes its load record while a piece may still commit.
    """
    # A piece submitted while more was coming may have looked just before the last of it came:
    # one that finds nothing then claims once more, even if nothing is coming any more.
    hopeful: set[int] = set()

    def start() -> StepFuture[R | None]:
        coming = more_coming()
        future = submit()
        if coming:
            hopeful.add(id(future))
        return future

    in_flight = [start() for _ in range(slots)]
    idle = 0
    try:
        while in_flight or idle:
            if STOP_REQUESTED.is_set():
                raise KeyboardInterrupt
            finished = first_done(in_flight, timeout=IDLE_POLL_S if idle else None)
            if finished is None:  # idle slots waited long enough: claim again
                in_flight.extend(start() for _ in range(idle))
                idle = 0
                continue
            in_flight.remove(finished)
            was_hopeful = id(finished) in hopeful
            hopeful.discard(id(finished))
            result = finished.result()
            if result is not None:
                take(result)
                in_flight.append(start())
            elif was_hopeful:
                idle += 1
    except BaseException as exc:
        stop()
        if stop_signal(exc) is not None:
            wait_for(in_flight, timeout=stop_grace_s)
        else:
            wait_for(in_flight)
        raise


def first_done(
    in_flight: list[StepFuture[R]], *, timeout: float | None = None
) -> StepFuture[R] | None:
    """The first of `in_flight` to finish, or None when none did within `timeout` seconds (with
    none in flight: after `timeout`). Plain futures when bare; under Prefect, the thread pool's
    futures its task futures wrap (Prefect's own `as_completed` times out with an alarm signal
    on the main thread, which outlives the generator we take one future from)."""
    if not in_flight:
        time.sleep(timeout or 0)
        return None
    plain = [_unwrapped(f) for f in in_flight]
    if all(isinstance(p, futures.Future) for p in plain):
        done, _ = futures.wait(plain, timeout=timeout, return_when=futures.FIRST_COMPLETED)
        return next((f for f, p in zip(in_flight, plain, strict=True) if p in done), None)
    from prefect.futures import as_completed  # another task runner: wait without a timeout

    return cast("StepFuture[R]", next(as_completed(cast("list[Any]", in_flight))))


def is_finished(future: StepFuture[Any]) -> bool:
    """Whether `future` has finished (succeeded or failed), without waiting (nor asking the
    Prefect API: a thread pool task's future is read from the future it wraps)."""
    plain = _unwrapped(future)
    if isinstance(plain, futures.Future):
        return plain.done()
    return bool(plain.state.is_final())


def _unwrapped(future: StepFuture[Any]) -> Any:
    """A plain future itself; a Prefect task future of the thread pool, the future it wraps."""
    return getattr(future, "wrapped_future", future)


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
    for seen in error_chain(error):
        if isinstance(seen, stops):
            return seen
        if cancelled_query(seen):  # the SIGINT reached a query on the main thread (ADBC)
            return KeyboardInterrupt()
    return None


def error_chain(error: BaseException, *, depth: int = 10) -> Iterator[BaseException]:
    """`error`, then the exceptions it was raised while handling (`__context__`), `depth` at
    most: what a stop or a failure surfaced as is often a few links down."""
    seen: BaseException | None = error
    for _ in range(depth):
        if seen is None:
            return
        yield seen
        seen = seen.__context__


def _stop_types() -> tuple[type[BaseException], ...]:
    """KeyboardInterrupt, Terminated, and Prefect's TerminationSignal when Prefect is loaded
    (when it is not, nothing can have raised one: a bare run does not import it)."""
    prefect_exceptions = sys.modules.get("prefect.exceptions")
    if prefect_exceptions is None:
        return (KeyboardInterrupt, Terminated)
    termination: type[BaseException] = prefect_exceptions.TerminationSignal
    return (KeyboardInterrupt, Terminated, termination)
