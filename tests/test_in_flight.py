"""`stop_signal` knows a stop however it surfaces, so a stopped run says "stopped", not "failed"."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from flows.in_flight import keep_in_flight, stop_signal
from warehouse.postgres import connect

REPO = Path(__file__).resolve().parents[1]

# A process that runs a long query on its main thread, as a flow's migrate/discover steps do.
CHILD = """
import sys
from flows.in_flight import stop_signal
from warehouse.postgres import connect
with connect(sys.argv[1]) as conn, conn.cursor() as cur:
    try:
        cur.execute("SELECT pg_sleep(30) AS in_flight_probe")
        cur.fetchall()
    except Exception as exc:
        wrapped = RuntimeError("a task failed")
        wrapped.__context__ = exc
        print(type(exc).__name__, type(stop_signal(exc)).__name__,
              type(stop_signal(wrapped)).__name__, flush=True)
    else:
        print("the query was not interrupted", flush=True)
"""


def test_a_sigint_during_a_query_on_the_main_thread_is_a_stop_signal(pg_url: str) -> None:
    """ADBC turns such a SIGINT into a cancel of the query and raises the query's error (57014)
    instead of KeyboardInterrupt: a Ctrl-C during discovery made a stopped run "failed"."""
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, pg_url], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 30
        with connect(pg_url) as watcher:
            while True:
                with watcher.cursor() as cur:
                    cur.execute(
                        "SELECT count(*) FROM pg_stat_activity "
                        "WHERE query LIKE '%in_flight_probe%' AND state = 'active' "
                        "AND pid <> pg_backend_pid()"
                    )
                    running = cur.fetchone()
                watcher.rollback()
                if running and running[0]:
                    break
                assert child.poll() is None and time.monotonic() < deadline
                time.sleep(0.05)
        child.send_signal(signal.SIGINT)
        out, _ = child.communicate(timeout=20)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert out.split() == ["OperationalError", "KeyboardInterrupt", "KeyboardInterrupt"], out


def test_other_errors_are_not_stop_signals() -> None:
    error = RuntimeError("duplicate key")
    error.sqlstate = "23505"  # type: ignore[attr-defined]
    assert stop_signal(error) is None
    assert isinstance(stop_signal(KeyboardInterrupt()), KeyboardInterrupt)


def test_slots_wait_for_pieces_still_coming_before_they_end() -> None:
    """While discovery is still committing files, a slot that finds nothing claims again later
    instead of ending: every piece that comes is taken, and the window ends only once nothing
    more can come."""
    queue: list[int] = []
    lock = threading.Lock()
    done_coming = threading.Event()

    def produce() -> None:
        for n in range(6):
            time.sleep(0.1)
            with lock:
                queue.append(n)
        done_coming.set()

    def claim() -> int | None:
        with lock:
            return queue.pop(0) if queue else None

    taken: list[int] = []
    producer = threading.Thread(target=produce)
    with ThreadPoolExecutor(max_workers=2) as pool:
        producer.start()
        keep_in_flight(
            lambda: pool.submit(claim),
            slots=2,
            take=taken.append,
            more_coming=lambda: not done_coming.is_set(),
        )
    producer.join()
    assert done_coming.is_set()
    assert sorted(taken) == list(range(6))


def test_a_requested_stop_ends_the_loop_even_when_its_sigint_is_lost() -> None:
    """`request_stop` sends SIGINT and sets a flag; the loop raises KeyboardInterrupt at its next
    turn on the flag alone (here SIGINT is ignored, as a lost signal would be)."""
    from flows.in_flight import STOP_REQUESTED, request_stop

    pieces = 0

    def piece() -> int:
        time.sleep(0.01)
        return 1

    def take(_: int) -> None:
        nonlocal pieces
        pieces += 1
        if pieces == 5:
            threading.Thread(target=request_stop).start()
        if pieces == 2000:
            raise RuntimeError("the requested stop was not heeded")

    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with ThreadPoolExecutor(max_workers=2) as pool:
            started = time.monotonic()
            try:  # it never ends by itself: every piece returns 1
                keep_in_flight(lambda: pool.submit(piece), slots=2, take=take)
            except KeyboardInterrupt:
                stopped = True
            else:
                stopped = False
    finally:
        signal.signal(signal.SIGINT, previous)
        STOP_REQUESTED.clear()
    assert stopped and 5 <= pieces < 200 and time.monotonic() - started < 10


def test_a_run_whose_output_pipe_closed_says_so_in_its_load_record() -> None:
    """`biobridge ingest | head` on the stack: once `head` exits, Prefect's console handler (rich)
    meets a BrokenPipeError and raises SystemExit(1). The record said "SystemExit: 1"."""
    from flows.body import describe_error

    def on_broken_pipe() -> None:  # rich.console.Console.on_broken_pipe, less its dup2
        raise SystemExit(1)

    def write_buffer() -> None:  # rich.console.Console._check_buffer
        try:
            raise BrokenPipeError(32, "Broken pipe")
        except BrokenPipeError:
            on_broken_pipe()

    try:
        write_buffer()
    except SystemExit as exc:
        closed = exc
    wrapped = RuntimeError("a task failed")
    wrapped.__context__ = closed
    for error in (closed, wrapped):
        assert describe_error(error).startswith("stopped: the run's output was closed"), error
    assert describe_error(SystemExit(1)) == "SystemExit: 1"
