"""Chunked replays and backfills in Postgres: the run a command resumes, and its chunks.

A chunk is claimed by locking its row (`FOR UPDATE SKIP LOCKED`) in a transaction that stays open
while the chunk runs and marks it done before it commits: a stopped process releases its chunks
with its connection (they are simply not done), and two processes never run the same chunk.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from warehouse.postgres import Connection, one_row, text_array


@dataclass(frozen=True)
class ReplayRun:
    """One chunked command: its window and when it started (files it loaded since are done)."""

    run_id: int
    mode: str
    replay_states: tuple[str, ...]
    created_at: datetime


@dataclass(frozen=True)
class Chunk:
    """One vendor's files received in [chunk_from, chunk_until)."""

    vendor: str
    chunk_from: datetime
    chunk_until: datetime


def open_run(
    conn: Connection,
    *,
    command_key: str,
    mode: str,
    vendors: Sequence[str],
    window: tuple[datetime, datetime],
    replay_states: Sequence[str],
    chunk_hours: int,
    chunks: Sequence[Chunk],
) -> ReplayRun:
    """The unfinished run of this command, or a new one with its chunks; committed."""
    with conn.cursor() as cur:
        cur.execute(
            "INSERT INTO biobridge.replay_runs (command_key, mode, vendors, received_from, "
            "received_until, replay_states, chunk_hours) "
            "VALUES ($1, $2, $3::text[], $4, $5, $6::text[], $7) "
            "ON CONFLICT (command_key) WHERE finished_at IS NULL DO NOTHING",
            (
                command_key,
                mode,
                text_array(vendors),
                window[0],
                window[1],
                text_array(replay_states),
                chunk_hours,
            ),
        )
        cur.execute(
            "SELECT run_id, mode, replay_states, created_at FROM biobridge.replay_runs "
            "WHERE command_key = $1 AND finished_at IS NULL",
            (command_key,),
        )
        run_id, run_mode, states, created_at = one_row(cur)
        cur.execute(
            "INSERT INTO biobridge.replay_chunks (run_id, vendor, chunk_from, chunk_until) "
            "SELECT $1, v, f, u FROM unnest($2::text[], $3::timestamptz[], $4::timestamptz[]) "
            "AS c (v, f, u) ON CONFLICT DO NOTHING",
            (
                run_id,
                text_array([c.vendor for c in chunks]),
                text_array([c.chunk_from.isoformat() for c in chunks]),
                text_array([c.chunk_until.isoformat() for c in chunks]),
            ),
        )
    conn.commit()
    return ReplayRun(int(run_id), str(run_mode), tuple(states), created_at)


def claim_chunk(conn: Connection, run_id: int) -> Chunk | None:
    """Lock the next chunk nobody runs and that is not done; the transaction stays open."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT vendor, chunk_from, chunk_until FROM biobridge.replay_chunks "
            "WHERE run_id = $1 AND state = 'pending' ORDER BY chunk_from, vendor "
            "LIMIT 1 FOR UPDATE SKIP LOCKED",
            (run_id,),
        )
        row = cur.fetchone()
    if row is None:
        conn.rollback()
        return None
    return Chunk(vendor=row[0], chunk_from=row[1], chunk_until=row[2])


def finish_chunk(
    conn: Connection,
    run_id: int,
    chunk: Chunk,
    *,
    load_id: int,
    files_read: int,
    rows_written: int,
) -> None:
    """Mark the claimed chunk done and commit (which releases its lock)."""
    with conn.cursor() as cur:
        cur.execute(
            "UPDATE biobridge.replay_chunks SET state = 'done', completions = completions + 1, "
            "load_id = $4, files_read = $5, rows_written = $6, finished_at = now() "
            "WHERE run_id = $1 AND vendor = $2 AND chunk_from = $3",
            (run_id, chunk.vendor, chunk.chunk_from, load_id, files_read, rows_written),
        )
    conn.commit()


def run_progress(conn: Connection, run_id: int) -> tuple[int, int]:
    """(chunks done, chunks in all) of a run."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT count(*) FILTER (WHERE state = 'done'), count(*) "
            "FROM biobridge.replay_chunks WHERE run_id = $1",
            (run_id,),
        )
        done, total = one_row(cur)
    conn.commit()
    return int(done), int(total)


def command_progress(conn: Connection, command_key: str) -> tuple[int, int] | None:
    """(done, total) of the command's latest run (unfinished first), None before it exists."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT run_id FROM biobridge.replay_runs WHERE command_key = $1 "
            "ORDER BY finished_at IS NULL DESC, run_id DESC LIMIT 1",
            (command_key,),
        )
        row = cur.fetchone()
    conn.commit()
    return None if row is None else run_progress(conn, int(row[0]))


def finish_run_if_done(conn: Connection, run_id: int) -> bool:
    """Close the run when every chunk is done (the same command then starts a new run)."""
    with conn.cursor() as cur:
        cur.execute(
            "WITH closed AS (UPDATE biobridge.replay_runs SET finished_at = now() "
            "WHERE run_id = $1 AND finished_at IS NULL AND NOT EXISTS (SELECT FROM "
            "biobridge.replay_chunks WHERE run_id = $1 AND state <> 'done') RETURNING 1) "
            "SELECT count(*) FROM closed",
            (run_id,),
        )
        (closed,) = one_row(cur)
    conn.commit()
    return bool(closed)
