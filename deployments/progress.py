"""The progress bar of a chunked replay or backfill in the terminal.

A thread polls the run's chunk table in Postgres (the same numbers as the run's progress artifact,
also when the run executes on the stack's server) and redraws one line on stderr: a bar on a
terminal, a line per change otherwise (logs, tests).
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from flows.params import IngestParams

POLL_S = 0.5
WIDTH = 30


def render(done: int, total: int) -> str:
    """`[#########.....]  9/30 chunks` (pure; the bar is WIDTH characters)."""
    filled = WIDTH * done // total if total else WIDTH
    return f"[{'#' * filled}{'.' * (WIDTH - filled)}] {done:>{len(str(total))}}/{total} chunks"


@contextmanager
def chunk_progress(params: IngestParams, *, out: TextIO | None = None) -> Iterator[None]:
    """Draw the chunked run's progress while the body runs (nothing for an unchunked run)."""
    if not params.chunk_hours or params.received_from is None or params.received_until is None:
        yield
        return
    from ops.replay import command_progress
    from tasks.replay import command_key

    key = command_key(
        mode=params.mode,
        vendors=params.vendors,
        start=params.received_from,
        end=params.received_until,
        replay_states=params.replay_states,
        chunk_hours=params.chunk_hours,
    )
    stream = out or sys.stderr
    tty = stream.isatty()
    stop = threading.Event()
    shown: list[tuple[int, int]] = []

    def draw() -> None:
        try:
            progress = command_progress(key)
        except Exception:  # noqa: BLE001 - a display; the run reports its own errors
            return
        if progress is None or (shown and shown[-1] == progress):
            return
        shown.append(progress)
        line = render(*progress)
        stream.write(f"\r{line}" if tty else f"{line}\n")
        stream.flush()

    def poll() -> None:
        while not stop.wait(POLL_S):
            draw()

    thread = threading.Thread(target=poll, name="chunk-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=2)
        draw()
        if tty and shown:
            stream.write("\n")
            stream.flush()
