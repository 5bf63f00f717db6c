"""The chunked part of a replay or backfill run: chunks in parallel, progress, resume.

The ingest flow calls `run_chunked` instead of discover + load when `chunk_hours` is set. Chunk
state lives in Postgres (`biobridge.replay_chunks`), so the same command resumes after Ctrl-C or
a crash, and several runs of it share the chunks instead of repeating them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast
from uuid import UUID

from flows.in_flight import keep_in_flight
from schemas.loads import LoadCounts
from tasks.replay import ChunkResult, request_stop
from tasks.run_context import is_bare, run_logger
from tasks.runtime import database_url
from warehouse.postgres import connect
from warehouse.replay import ReplayRun, finish_run_if_done, run_progress

if TYPE_CHECKING:
    from flows.params import IngestParams
    from tasks.steps import IngestTasks

PROGRESS_KEY = "replay-progress"


def run_chunked(
    steps: IngestTasks,
    params: IngestParams,
    *,
    load_id: int,
    counts: LoadCounts,
) -> int:
    """Run the command's chunks not done yet, `params.chunk_parallel` at a time; add up their
    counts into `counts`; return the files a backfill's chunks discovered. Stopping, chunks in
    flight finish their current batch (within the grace of `keep_in_flight`) and are left not
    done."""
    start, end, hours = params.received_from, params.received_until, params.chunk_hours
    if start is None or end is None or hours is None:
        raise ValueError("a chunked run needs received_from, received_until and chunk_hours")
    run: ReplayRun = steps.open_replay_run(
        mode=params.mode,
        vendors=params.vendors,
        window=(start, end),
        replay_states=params.replay_states,
        chunk_hours=hours,
    )
    progress = _Progress(run)

    discovered = 0

    def take(result: ChunkResult) -> None:
        nonlocal discovered
        counts.add(result.counts)
        discovered += result.discovered
        progress.update()

    keep_in_flight(
        lambda: steps.replay_chunk.submit(run=run, load_id=load_id, batch_files=params.batch_files),
        slots=params.chunk_parallel,
        take=take,
        stop=lambda: request_stop(load_id),  # chunks in flight stop after their current batch
    )
    with connect(database_url()) as conn:
        finish_run_if_done(conn, run.run_id)
    progress.update()
    return discovered


class _Progress:
    """The run's progress artifact (chunks done of all, also by earlier runs of the command).
    A bare run has none: its command draws the same numbers from Postgres (`chunk_progress`)."""

    def __init__(self, run: ReplayRun) -> None:
        self.run = run
        self.artifact: UUID | None = None
        self.update()

    def update(self) -> None:
        """Publish chunks done / all; a progress display never fails the run."""
        if is_bare():
            return
        from prefect.artifacts import create_progress_artifact, update_progress_artifact

        try:
            with connect(database_url()) as conn:
                done, total = run_progress(conn, self.run.run_id)
            percent = 100.0 * done / total if total else 100.0
            text = f"chunked {self.run.mode} run {self.run.run_id}: {done} of {total} chunks done"
            if self.artifact is None:
                self.artifact = cast(
                    "UUID",
                    create_progress_artifact(progress=percent, key=PROGRESS_KEY, description=text),
                )
            else:
                update_progress_artifact(self.artifact, percent, description=text)
        except Exception as exc:  # noqa: BLE001 - progress is a display; the chunk table is truth
            run_logger().warning("could not publish the replay progress: %s", exc)
