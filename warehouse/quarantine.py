"""Reading the quarantine: what a run rejected, per file, for reports and `biobridge quarantine`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from warehouse.postgres import Connection


@dataclass(frozen=True)
class QuarantinedFile:
    """One object with open quarantine entries: its vendor, how many, and the first reason."""

    object_key: str
    vendor: str
    received_at: datetime
    entries: int
    whole_file: bool
    reason: str
    load_id: int


@dataclass(frozen=True)
class QuarantineEntry:
    """One quarantined record (record_index None: the whole file)."""

    quarantine_id: int
    record_index: int | None
    field: str | None
    reason: str
    expected: str | None
    found: str | None
    raw_excerpt: str | None
    load_id: int
    quarantined_at: datetime
    replayed_at: datetime | None


_FILES = """
SELECT q.object_key, f.vendor, f.received_at, count(*),
       bool_or(q.record_index IS NULL),
       (array_agg(q.reason ORDER BY q.record_index NULLS FIRST, q.quarantine_id))[1],
       max(q.load_id)
FROM biobridge.quarantine q JOIN biobridge.landed_files f USING (object_key)
WHERE q.replayed_at IS NULL
  AND ($1::bigint IS NULL OR q.load_id = $1)
  AND ($2::text IS NULL OR f.vendor = $2)
GROUP BY q.object_key, f.vendor, f.received_at
ORDER BY max(q.quarantined_at) DESC, q.object_key
LIMIT $3
"""


def quarantined_files(
    conn: Connection, *, load_id: int | None = None, vendor: str | None = None, limit: int = 50
) -> list[QuarantinedFile]:
    """Files with open (not replayed) quarantine entries, newest first; optionally of one load."""
    with conn.cursor() as cur:
        cur.execute(_FILES, (load_id, vendor, limit))
        rows = cur.fetchall()
    conn.rollback()
    return [
        QuarantinedFile(
            object_key=k,
            vendor=v,
            received_at=r,
            entries=int(n),
            whole_file=bool(w),
            reason=str(reason),
            load_id=int(lid),
        )
        for k, v, r, n, w, reason, lid in rows
    ]


def quarantine_counts(conn: Connection) -> dict[str, int]:
    """Open quarantine entries and files per vendor (for `health`)."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT f.vendor, count(DISTINCT q.object_key) FROM biobridge.quarantine q "
            "JOIN biobridge.landed_files f USING (object_key) WHERE q.replayed_at IS NULL "
            "GROUP BY f.vendor ORDER BY f.vendor"
        )
        rows = cur.fetchall()
    conn.rollback()
    return {str(v): int(n) for v, n in rows}


def quarantine_entries(conn: Connection, object_key: str) -> list[QuarantineEntry]:
    """Every quarantine entry of one object (also replayed ones), oldest first."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT quarantine_id, record_index, field, reason, expected, found, raw_excerpt, "
            "load_id, quarantined_at, replayed_at FROM biobridge.quarantine "
            "WHERE object_key = $1 ORDER BY quarantine_id",
            (object_key,),
        )
        rows = cur.fetchall()
    conn.rollback()
    return [QuarantineEntry(*row) for row in rows]


def oldest_pending(conn: Connection) -> tuple[int, datetime | None]:
    """How many ledger files are pending, and when the oldest of them was received."""
    with conn.cursor() as cur:
        cur.execute("SELECT count(*), min(received_at) FROM biobridge.pending_files")
        row = cur.fetchone()
    conn.rollback()
    return (0, None) if row is None else (int(row[0]), row[1])


def load_of_flow_run(conn: Connection, flow_run_id: str) -> dict[str, object] | None:
    """The load record a flow run wrote (None if it opened none)."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT * FROM biobridge.loads WHERE flow_run_id = $1 ORDER BY load_id DESC LIMIT 1",
            (flow_run_id,),
        )
        rows = cur.fetch_arrow_table().to_pylist()
    conn.rollback()
    return rows[0] if rows else None
