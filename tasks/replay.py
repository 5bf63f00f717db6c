"""Chunked replay and backfill: a long window, one vendor and `chunk_hours` at a time.

`plan_chunks` and `command_key` are pure. `run_chunk` claims the next chunk of a run (its row
stays locked while it runs), requeues (replay) or lists (backfill) that chunk's files, loads them
batch by batch and marks the chunk done in the claim's transaction. A stopped process leaves its
chunks not done; the same command resumes them, skipping files already settled since the run
began. Files a concurrent ingest holds are skipped by the claim (`FOR UPDATE SKIP LOCKED`) and
loaded by that ingest, never twice.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from landing.store import ObjectStore
from schemas.loads import LoadCounts
from tasks.batch import BatchSpec, process_batch
from tasks.discover import discover
from warehouse.ledger import requeue
from warehouse.postgres import Dsn, connect
from warehouse.replay import Chunk, ReplayRun, claim_chunk, finish_chunk

_stopping: set[int] = set()
_lock = threading.Lock()


def request_stop(load_id: int) -> None:
    """The run of `load_id` is stopping (Ctrl-C, cancellation): its chunks stop after their
    current batch and stay not done. Other runs in this process (`biobridge up`) go on."""
    with _lock:
        _stopping.add(load_id)


def stop_requested(load_id: int) -> bool:
    """Whether the run of `load_id` is stopping."""
    with _lock:
        return load_id in _stopping


def plan_chunks(
    vendors: Sequence[str], *, start: datetime, end: datetime, hours: int
) -> list[Chunk]:
    """The chunks covering [start, end) per vendor, `hours` long (the last may be shorter)."""
    step = timedelta(hours=hours)
    chunks = []
    at = start
    while at < end:
        until = min(at + step, end)
        chunks += [Chunk(vendor=v, chunk_from=at, chunk_until=until) for v in vendors]
        at = until
    return chunks


def command_key(
    *,
    mode: str,
    vendors: Sequence[str],
    start: datetime,
    end: datetime,
    replay_states: Sequence[str],
    chunk_hours: int,
) -> str:
    """What makes two commands "the same" (the second resumes the first): not workers or batch
    size, which may change between attempts."""
    states = sorted(replay_states) if mode == "replay" else []
    window = [at.astimezone(UTC).isoformat() for at in (start, end)]
    text = "|".join([mode, ",".join(sorted(vendors)), *window, ",".join(states), str(chunk_hours)])
    return f"{mode}:{hashlib.sha256(text.encode()).hexdigest()[:16]}"


@dataclass
class ChunkResult:
    """What one chunk did (None from `run_chunk` means no chunk was left to claim)."""

    chunk: Chunk
    counts: LoadCounts = field(default_factory=LoadCounts)
    discovered: int = 0
    done: bool = False


def run_chunk(
    url: Dsn,
    store: ObjectStore,
    *,
    run: ReplayRun,
    load_id: int,
    batch_files: int,
) -> ChunkResult | None:
    """Claim the next chunk of `run` and load its files; None when every chunk is done or taken."""
    with connect(url) as lock_conn:
        chunk = claim_chunk(lock_conn, run.run_id)
        if chunk is None:
            return None
        result = ChunkResult(chunk=chunk)
        window = (chunk.chunk_from, chunk.chunk_until)
        with connect(url) as conn:
            if run.mode == "replay":
                requeue(
                    conn,
                    load_id=load_id,
                    vendors=[chunk.vendor],
                    states=run.replay_states,
                    received_from=window[0],
                    received_until=window[1],
                    loaded_before=run.created_at,
                )
            else:
                found = discover(conn, store, vendors=[chunk.vendor], window=window)
                result.discovered = sum(found.values())
            spec = BatchSpec(
                limit=batch_files,
                vendors=(chunk.vendor,),
                received_from=window[0],
                received_until=window[1],
            )
            while not stop_requested(load_id):
                counts = process_batch(conn, store, load_id=load_id, spec=spec, url=url)
                if counts is None:
                    break
                result.counts.add(counts)
        if stop_requested(load_id):
            lock_conn.rollback()  # not done: the same command runs it again
            return result
        finish_chunk(
            lock_conn,
            run.run_id,
            chunk,
            load_id=load_id,
            files_read=result.counts.files_read,
            rows_written=result.counts.rows_inserted + result.counts.rows_updated,
        )
        result.done = True
    return result
