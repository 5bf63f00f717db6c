"""The ledger of landed files and the load records: what was seen, claimed, loaded or rejected.

All SQL here is built from fixed text and bound parameters; only identifiers we own appear
in the statements.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

import polars as pl
import pyarrow as pa

from landing.keys import KEY_PATTERN, VENDORS, parse_key
from schemas.loads import LoadRecord
from warehouse.postgres import Connection, Dsn, is_transient, one_row, text_array

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Claim:
    """The pending ledger rows this transaction holds a lock on, oldest first, as columns."""

    keys: list[str]
    order: dict[str, int]
    """Each key's place in the order deliveries became known (docs/ordering.md): greater wins."""
    loaded_before: frozenset[str]
    """Keys a load wrote before (a replay or a reload): rows may name them already."""

    def __len__(self) -> int:
        return len(self.keys)


# Advisory lock class of "this load's process is alive": (LOAD_LOCK_CLASS, load_id).
LOAD_LOCK_CLASS = int.from_bytes(b"bbld", "big") & 0x7FFF_FFFF
ABANDONED = (
    "abandoned: the process running this load stopped before closing it (killed, or it lost "
    "its database connection); the batches it committed stand, the rest stayed pending"
)


@contextmanager
def load_liveness(url: Dsn, load_id: int | None = None) -> Iterator[int]:
    """Hold a session advisory lock for a load while its run is alive; yields the load id.

    Without `load_id` it reserves the next one, locked before its record exists (open the record
    with `start_load(load_id=...)`): a 'running' record whose lock is free then belongs to nobody,
    however young, and the next run closes it (`close_abandoned_loads`). If the process dies the
    lock goes with its connection.
    """
    from warehouse.postgres import connect

    with connect(url, autocommit=True) as conn, conn.cursor() as cur:
        if load_id is None:
            cur.execute("SELECT nextval(pg_get_serial_sequence('biobridge.loads', 'load_id'))")
            (reserved,) = one_row(cur)
            load_id = int(reserved)
        cur.execute("SELECT pg_advisory_lock($1::int, $2::int)", (LOAD_LOCK_CLASS, load_id))
        cur.fetchall()
        yield load_id


def close_abandoned_loads(conn: Connection) -> int:
    """Mark as failed every 'running' load whose process no longer holds its liveness lock."""
    closed = 0
    with conn.cursor() as cur:
        cur.execute("SELECT load_id FROM biobridge.loads WHERE status = 'running' ORDER BY load_id")
        for (load_id,) in cur.fetchall():
            cur.execute(
                "SELECT pg_try_advisory_xact_lock($1::int, $2::int)", (LOAD_LOCK_CLASS, load_id)
            )
            (free,) = one_row(cur)
            if free:
                cur.execute(
                    "UPDATE biobridge.loads SET status = 'failed', finished_at = now(), "
                    "error = $2 WHERE load_id = $1 AND status = 'running'",
                    (load_id, ABANDONED),
                )
                closed += 1
    conn.commit()
    return closed


def start_load(
    conn: Connection,
    *,
    flow_run_id: str | None,
    kind: str,
    code_version: str,
    load_id: int | None = None,
    commit: bool = True,
) -> int:
    """Open a load record and commit it, so rows and quarantine entries can point at it.

    `load_id`: the id `load_liveness` reserved and locked (a flow's load); None takes the next.
    `commit=False` leaves it in the caller's transaction (a dry run rolls it back).
    """
    with conn.cursor() as cur:
        if load_id is None:
            cur.execute(
                "INSERT INTO biobridge.loads (flow_run_id, kind, code_version) "
                "VALUES ($1, $2, $3) RETURNING load_id",
                (flow_run_id, kind, code_version),
            )
        else:
            cur.execute(
                "INSERT INTO biobridge.loads (load_id, flow_run_id, kind, code_version) "
                "OVERRIDING SYSTEM VALUE VALUES ($1, $2, $3, $4) RETURNING load_id",
                (load_id, flow_run_id, kind, code_version),
            )
        (opened,) = one_row(cur)
    if commit:
        conn.commit()
    return int(opened)


def finish_load(
    conn: Connection, load_id: int, *, status: str, error: str | None, drift: str
) -> LoadRecord:
    """Close the load record and return its final counts, as stored."""
    if error is not None:
        error = error.replace("\x00", "\\u0000")  # a message may quote a body: text refuses NUL
    with conn.cursor() as cur:
        cur.execute(
            "UPDATE biobridge.loads SET finished_at = now(), status = $2, error = $3, "
            "drift = $4::jsonb WHERE load_id = $1",
            (load_id, status, error, drift),
        )
        cur.execute("SELECT * FROM biobridge.loads WHERE load_id = $1", (load_id,))
        row = cast(LoadRecord, cur.fetch_arrow_table().to_pylist()[0])
    conn.commit()
    return row


def record_discovered(conn: Connection, keys: Sequence[str]) -> int:
    """Add keys to the ledger as pending (known ones are left alone); returns how many were new."""
    table, strays = parse_discovered(keys)
    if strays:
        # Not written by our receiver: never loaded, never fatal; `biobridge verify` names them.
        log.warning(
            "ignoring %d objects whose keys are not landing keys, e.g. %s", len(strays), strays[:3]
        )
    if not table.num_rows:
        return 0
    with conn.cursor() as cur:
        cur.adbc_ingest("bb_discovered", table, mode="replace", temporary=True)
        # New files enter the ledger and the queue of pending files (migration 0014) together.
        cur.execute(
            "WITH new AS (INSERT INTO biobridge.landed_files (object_key, vendor, received_at) "
            "SELECT object_key, vendor, received_at FROM pg_temp.bb_discovered "
            "ORDER BY object_key ON CONFLICT (object_key) DO NOTHING "
            "RETURNING object_key, vendor, received_at, delivery_seq) "
            "INSERT INTO biobridge.pending_files "
            "(object_key, vendor, received_at, delivery_seq, loaded_before) "
            "SELECT object_key, vendor, received_at, delivery_seq, false FROM new"
        )
        inserted = cur.rowcount
    conn.commit()
    return int(inserted)


_DISCOVERED_FIELDS: list[pa.Field[Any]] = [
    pa.field("object_key", pa.string()),
    pa.field("vendor", pa.string()),
    pa.field("received_at", pa.timestamp("us", tz="UTC")),
]
_DISCOVERED = pa.schema(_DISCOVERED_FIELDS)


def parse_discovered(keys: Sequence[str]) -> tuple[pa.Table, list[str]]:
    """The `_DISCOVERED` rows of `keys` and the keys that are not landing keys.

    Keys our receiver wrote are parsed in bulk (one regex and one `strptime` over the column:
    one by one in Python, with a datetime each, it was a third of discovery's CPU); any other
    key (an impossible stamp, an unknown vendor, another shape) is judged by `parse_key`. The
    stamp is fixed-width (8 + 12 digits), so a valid one reads the same either way.
    """
    column = pl.Series("object_key", keys, dtype=pl.String)
    parts = column.str.extract_groups(f"^{KEY_PATTERN}$").struct.unnest()
    frame = pl.DataFrame(
        {
            "object_key": column,
            "vendor": parts["vendor"],
            "received_at": parts["stamp"].str.strptime(
                pl.Datetime("us", "UTC"), "%Y%m%dT%H%M%S%6fZ", strict=False
            ),
        }
    )
    plain = pl.col("vendor").is_in(list(VENDORS)) & pl.col("received_at").is_not_null()
    fast = frame.filter(plain).to_arrow().cast(_DISCOVERED)
    rows: dict[str, list[object]] = {name: [] for name in _DISCOVERED.names}
    strays: list[str] = []
    for key in frame.filter(~plain.fill_null(False))["object_key"].to_list():
        try:
            found = parse_key(key)
        except ValueError:
            strays.append(key)
            continue
        rows["object_key"].append(key)
        rows["vendor"].append(found.vendor)
        rows["received_at"].append(found.received_at)
    if not rows["object_key"]:
        return fast, strays
    return pa.concat_tables([fast, pa.table(rows, schema=_DISCOVERED)]), strays


ANALYZE_AFTER_NEW_FILES = 10_000
"""Discovering at least this many files refreshes the ledger's statistics (`refresh_statistics`)."""


def refresh_statistics(conn: Connection) -> None:
    """ANALYZE the ledger and the queue of pending files. After a large discovery their
    statistics still say few files are pending (autovacuum had not analyzed the ledger in a whole
    1M-file run); with the claim index on the ledger (before migration 0014) the claim then
    sorted every pending row for each batch (1.1 s per claim at 860k pending) instead of reading
    the first ones from its index (measured: 350 -> 1,650 files/s). Without the right (owner or
    MAINTAIN) it is a warning and the statistics stay as they are."""
    with conn.cursor() as cur:
        cur.execute("ANALYZE biobridge.landed_files, biobridge.pending_files")
    conn.commit()


def claim_pending(
    conn: Connection,
    *,
    limit: int,
    vendors: Sequence[str],
    received_from: datetime | None,
    received_until: datetime | None,
) -> Claim:
    """Lock up to `limit` pending files, oldest first, skipping those another run holds.

    The lock lasts until this transaction ends: the caller loads and commits (or rolls back)
    in the same transaction, so a crash anywhere leaves the files pending, never half-loaded.
    """
    with conn.cursor() as cur:
        # The queue rows are locked (migration 0014); their ledger rows change only in this
        # transaction's load, which deletes the queue rows. One table, no join: a join planned
        # on stale statistics (a large discovery still running) hashed the whole ledger.
        cur.execute(
            "SELECT object_key, delivery_seq, loaded_before "
            "FROM biobridge.pending_files "
            "WHERE vendor = ANY($1::text[]) "
            "AND received_at >= coalesce($2::timestamptz, '-infinity') "
            "AND received_at < coalesce($3::timestamptz, 'infinity') "
            "ORDER BY received_at, object_key LIMIT $4 FOR UPDATE SKIP LOCKED",
            ("{" + ",".join(vendors) + "}", received_from, received_until, limit),
        )
        # As Arrow columns: the DB-API row iterator cost ~0.1 ms a row (a tenth of a claim), and
        # an object per file another tenth.
        claimed = cur.fetch_arrow_table()
    keys = cast("list[str]", claimed.column(0).to_pylist())
    seqs = cast("list[int]", claimed.column(1).to_pylist())
    before = cast("list[str]", claimed.filter(claimed.column(2)).column(0).to_pylist())
    return Claim(
        keys=keys, order=dict(zip(keys, seqs, strict=True)), loaded_before=frozenset(before)
    )


def requeue(
    conn: Connection,
    *,
    load_id: int,
    vendors: Sequence[str],
    states: Sequence[str],
    received_from: datetime | None,
    received_until: datetime | None,
    loaded_before: datetime | None = None,
    commit: bool = True,
) -> int:
    """Put files back to pending for a replay; their open quarantine entries are marked replayed.

    Reloading re-derives each file's rows (tasks/load.py): its rows take what the current code
    makes of it, and never a measurement a later delivery holds. `loaded_before` leaves alone
    files settled since then (a resumed chunked replay did them). `commit=False` leaves the
    change in the caller's transaction (a dry run rolls it back).
    """
    params = (
        "{" + ",".join(vendors) + "}",
        "{" + ",".join(states) + "}",
        received_from,
        received_until,
        loaded_before,
    )
    with conn.cursor() as cur:
        cur.execute(
            "UPDATE biobridge.quarantine SET replayed_at = now(), replay_load_id = $6 "
            "WHERE replayed_at IS NULL AND object_key IN (SELECT object_key "
            "FROM biobridge.landed_files WHERE vendor = ANY($1::text[]) "
            "AND state = ANY($2::text[]) "
            "AND received_at >= coalesce($3::timestamptz, '-infinity') "
            "AND received_at < coalesce($4::timestamptz, 'infinity') "
            "AND coalesce(loaded_at, '-infinity') < coalesce($5::timestamptz, 'infinity'))",
            (*params, load_id),
        )
        # Counted with RETURNING: the ADBC driver's rowcount is -1 for an UPDATE. Files put
        # back join the queue of pending files (one already there, claimed or not, stays).
        cur.execute(
            "WITH moved AS (UPDATE biobridge.landed_files SET state = 'pending' "
            "WHERE vendor = ANY($1::text[]) AND state = ANY($2::text[]) "
            "AND received_at >= coalesce($3::timestamptz, '-infinity') "
            "AND received_at < coalesce($4::timestamptz, 'infinity') "
            "AND coalesce(loaded_at, '-infinity') < coalesce($5::timestamptz, 'infinity') "
            "RETURNING object_key, vendor, received_at, delivery_seq, load_id IS NOT NULL), "
            "queued AS (INSERT INTO biobridge.pending_files "
            "(object_key, vendor, received_at, delivery_seq, loaded_before) "
            "SELECT * FROM moved ON CONFLICT (object_key) DO NOTHING) "
            "SELECT count(*) FROM moved",
            params,
        )
        (count,) = one_row(cur)
    if commit:
        conn.commit()
    return int(count)


@dataclass(frozen=True)
class Attempts:
    """How often a pending file was in a batch that never committed (its run died or failed)."""

    total: int = 0
    alone: int = 0  # of those, batches that held this file only


def failed_attempts(conn: Connection, keys: Sequence[str]) -> dict[str, Attempts]:
    """Attempts of the claimed `keys` that have any: the open batches left behind that hold them.

    Rows of batches in flight elsewhere never hold these keys: this transaction locks them.
    """
    with conn.cursor() as cur:
        cur.execute(
            # A hash join of the two key lists: `&&` and `= ANY` compare every pair.
            "SELECT k, count(*), count(*) FILTER (WHERE cardinality(b.object_keys) = 1) "
            "FROM biobridge.open_batches AS b CROSS JOIN LATERAL unnest(b.object_keys) AS k "
            "JOIN unnest($1::text[]) AS c (key) ON c.key = k GROUP BY k",
            (text_array(keys),),
        )
        rows = cur.fetchall()
    return {k: Attempts(int(total), int(alone)) for k, total, alone in rows}


def open_batch(url: Dsn, *, load_id: int, keys: Sequence[str]) -> int:
    """Record, committed at once on a connection of its own, that a batch of `keys` starts.

    If the process dies before the batch commits (which deletes this row: `close_batch`), the
    row stays and counts as one failed attempt of each of its files.
    """
    from warehouse.postgres import session

    with session(url, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(
            "INSERT INTO biobridge.open_batches (load_id, object_keys) VALUES ($1, $2::text[]) "
            "RETURNING batch_id",
            (load_id, text_array(keys)),
        )
        (batch_id,) = one_row(cur)
    return int(batch_id)


def discard_batch(url: Dsn, batch_id: int, *, tries: int = 5, pause_s: float = 0.2) -> bool:
    """Forget the record of a batch that failed for a transient reason (a lost connection, a
    store outage): that is no attempt against its files. Best effort, on a connection of its
    own; False when the database stayed unreachable (the record then counts as one attempt)."""
    import time

    from warehouse.postgres import connect

    for attempt in range(tries):
        try:
            with connect(url, autocommit=True) as conn, conn.cursor() as cur:
                cur.execute("DELETE FROM biobridge.open_batches WHERE batch_id = $1", (batch_id,))
            return True
        except Exception as exc:  # noqa: BLE001 - only transient failures are retried here
            if not is_transient(exc) or attempt == tries - 1:
                return False
            time.sleep(pause_s)
    return False


def close_batch(conn: Connection, batch_id: int) -> None:
    """In the batch's own transaction: it commits, so it is no failed attempt."""
    with conn.cursor() as cur:
        # Also forget failed batches none of whose files is pending any more (they loaded in a
        # later, smaller batch): the table keeps only what can still count as an attempt.
        # Batches in flight elsewhere hold pending files, so they are never removed here.
        cur.execute(
            "DELETE FROM biobridge.open_batches AS b WHERE b.batch_id = $1 OR NOT EXISTS ("
            "SELECT FROM unnest(b.object_keys) AS k JOIN biobridge.pending_files AS p "
            "ON p.object_key = k)",
            (batch_id,),
        )


def set_aside(conn: Connection, *, load_id: int, poisoned: dict[str, str]) -> None:
    """Quarantine files that keep killing or failing runs, with the reason; never read again.

    Their failed attempts are forgotten, so a `replay` after a fix starts them afresh; other
    files of those batches lose that attempt too (they were innocent or are retried anyway).
    """
    keys = list(poisoned)
    reasons = [poisoned[k] for k in keys]
    with conn.cursor() as cur:
        cur.execute(
            "INSERT INTO biobridge.quarantine (object_key, field, reason, expected, found, "
            "raw_excerpt, load_id) SELECT k, '<file>', r, 'a file a run can load', "
            "'runs died or failed while loading it', NULL, $3 "
            "FROM unnest($1::text[], $2::text[]) AS u(k, r)",
            (text_array(keys), text_array(reasons), load_id),
        )
        cur.execute(
            "UPDATE biobridge.landed_files AS f SET state = 'quarantined', load_id = $3, "
            "loaded_at = now(), rows_loaded = 0, records_quarantined = 0, "
            "attempts = f.attempts + 1, last_error = u.r "
            "FROM unnest($1::text[], $2::text[]) AS u(k, r) WHERE f.object_key = u.k",
            (text_array(keys), text_array(reasons), load_id),
        )
        cur.execute(
            "DELETE FROM biobridge.pending_files WHERE object_key = ANY($1::text[])",
            (text_array(keys),),
        )
        cur.execute(
            "DELETE FROM biobridge.open_batches WHERE object_keys && $1::text[]",
            (text_array(keys),),
        )
