"""Load stage: one transaction per batch puts rows, quarantine entries and ledger states in place.

The batch's rows are COPYed (ADBC ingest of Arrow) into a temporary staging table, then one
set-based upsert moves them into `biometric_events`: a measurement is replaced only by a delivery
received later, so loading the same file twice changes nothing. The ledger rows of the batch were
locked when they were claimed; they change state in the same transaction, so a crash at any point
leaves every file either fully loaded or still pending.
"""

from __future__ import annotations

import polars as pl
import pyarrow as pa

from schemas.loads import LOAD_TOTALS, LoadCounts
from schemas.staging import FILE_RESULT, KEY_COLUMNS, QUARANTINE_ENTRY, STAGED_ROW, column_list
from warehouse.postgres import Connection

UPSERT_LOCK = 0x62627570_73657274  # the bytes of "bbupsert": the advisory lock of the upsert
"""Upserts take this transaction-scoped advisory lock: one at a time per database, across
processes and machines (two at once contend on the same index pages and WAL)."""

_COLUMNS = column_list(STAGED_ROW)
_VALUES = column_list(STAGED_ROW, casts=True, prefix="s.")
_KEY_MATCH = " AND ".join(
    f't."{c}" = s."{c}"' if c == "timestamp" else f"t.{c} = s.{c}" for c in KEY_COLUMNS
)

# The write is two statements instead of one INSERT ... ON CONFLICT DO UPDATE. First every
# staged row whose key is absent is inserted (ON CONFLICT DO NOTHING: a conflict neither locks
# nor writes the existing row). Only when some rows conflicted, those existing rows are updated
# where the delivery is newer; the rows this batch just inserted compare equal, so they stay.
# A first load (the common case) thus never runs the update, and a reload only probes the
# index (DO UPDATE ... WHERE false still locks, so writes, every conflicting row). Both run
# under UPSERT_LOCK, which every loader takes, so no other loader's row appears in between.
_INSERT = f"""
INSERT INTO public.biometric_events ({_COLUMNS})
SELECT {_VALUES}
FROM pg_temp.bb_stage AS s  -- already in key order (dedupe_newest): no sort here (~5% faster)
ON CONFLICT ({", ".join(f'"{c}"' if c == "timestamp" else c for c in KEY_COLUMNS)}) DO NOTHING
"""  # noqa: S608 - column names from our own contract, not input

_UPDATE = f"""
UPDATE public.biometric_events AS t
SET value = s.value, unit = s.unit, metadata = s.metadata::jsonb,
    received_at = s.received_at, source_key = s.source_key,
    record_index = s.record_index, load_id = s.load_id
FROM pg_temp.bb_stage AS s
WHERE {_KEY_MATCH}
  AND (s.received_at, s.source_key)
      > (coalesce(t.received_at, '-infinity'::timestamptz), coalesce(t.source_key, ''))
"""  # noqa: S608 - column names from our own contract, not input

_QUARANTINE = f"""
INSERT INTO biobridge.quarantine ({column_list(QUARANTINE_ENTRY)})
SELECT {column_list(QUARANTINE_ENTRY)} FROM pg_temp.bb_quarantine
"""  # noqa: S608 - names from our contract, not input

_LEDGER = """
UPDATE biobridge.landed_files AS f
SET state = r.state, load_id = $1, loaded_at = now(), rows_loaded = r.rows_loaded,
    records_quarantined = r.records_quarantined, size_bytes = r.size_bytes, sha256 = r.sha256,
    delivery_id = r.delivery_id, note = r.note, attempts = f.attempts + 1, last_error = NULL
FROM pg_temp.bb_file_results AS r
WHERE f.object_key = r.object_key
"""

_LOAD_COUNTS = "UPDATE biobridge.loads SET {} WHERE load_id = $1".format(  # noqa: S608
    ", ".join(f"{name} = {name} + ${n}" for n, name in enumerate(LOAD_TOTALS, start=2))
)


def dedupe_newest(rows: pl.DataFrame) -> pl.DataFrame:
    """One row per measurement key: the newest delivery wins (then the greater source key, then
    the later record of the file), so the choice never depends on the order rows arrive in.

    An upsert batch must not carry the same key twice, and sorting by the key makes concurrent
    loaders take row locks in the same order, so they cannot deadlock each other.
    """
    order = [*KEY_COLUMNS, "received_at", "source_key", "record_index"]
    return rows.sort(order, descending=[False] * 4 + [True] * 3).unique(
        subset=KEY_COLUMNS, keep="first", maintain_order=True
    )


def stage_batch(
    conn: Connection, *, stage: pa.Table, quarantine: pa.Table, file_results: pa.Table
) -> None:
    """COPY the batch into this connection's temporary tables (no WAL, nothing shared yet)."""
    with conn.cursor() as cur:
        for name, table, schema in (
            ("bb_stage", stage, STAGED_ROW),
            ("bb_quarantine", quarantine, QUARANTINE_ENTRY),
            ("bb_file_results", file_results, FILE_RESULT),
        ):
            cur.adbc_ingest(name, table.cast(schema), mode="replace", temporary=True)
        # Statistics for the temp table, so the ledger update probes the ledger's primary key
        # instead of scanning the whole (growing) ledger once per batch.
        cur.execute("ANALYZE pg_temp.bb_file_results")


def apply_batch(conn: Connection, *, load_id: int, counts: LoadCounts) -> LoadCounts:
    """Upsert the staged rows, write quarantine entries, move the ledger, count; then commit.

    Runs in the transaction that claimed the files, under the upsert's advisory lock (released
    at commit or rollback, also when the process dies). `counts` carries the file-level numbers; the
    row numbers come from what Postgres reports, so a report never states more than was written.
    """
    with conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock($1)", (UPSERT_LOCK,))
        cur.fetchall()
        cur.execute(_INSERT)
        inserted = int(cur.rowcount)
        updated = 0
        if inserted < counts.rows_staged:
            cur.execute(_UPDATE)
            updated = int(cur.rowcount)
        cur.execute(_QUARANTINE)
        cur.execute(_LEDGER, (load_id,))
        counts.rows_inserted = inserted
        counts.rows_updated = updated
        counts.rows_unchanged = counts.rows_staged - inserted - updated
        cur.execute(_LOAD_COUNTS, (load_id, *counts.totals()))
    conn.commit()
    return counts


def apply_empty(conn: Connection, *, load_id: int, counts: LoadCounts) -> LoadCounts:
    """Add a batch's counts that wrote no rows (files set aside) to the load; then commit."""
    with conn.cursor() as cur:
        cur.execute(_LOAD_COUNTS, (load_id, *counts.totals()))
    conn.commit()
    return counts
