"""Load stage: one transaction per batch puts rows, quarantine entries and ledger states in place.

The batch's rows are COPYed (ADBC ingest of Arrow) into a temporary staging table, then
set-based statements move them into `biometric_events` (docs/ordering.md has the rules):

- a measurement is held by the newest delivery that produces it, "newest" being the order in
  which deliveries became known (`landed_files.delivery_seq`, never a receiver's clock);
- a delivery loaded again (a replay) is re-derived: its rows take the new values and units, and
  its rows it no longer produces are removed (marked `deleted_at`, `deleted_by = 'rederive:…'`;
  readers use `current_biometric_events`), but it never takes a measurement from a later one;
- a row whose content does not change is not written, so loading the same file twice with the
  same code changes nothing and counts as unchanged.

The batch's files were locked when they were claimed (their rows in the queue of pending files);
their ledger rows change state and their queue rows go in the same transaction, so a crash at
any point leaves every file either fully loaded or still pending.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
from adbc_driver_manager.dbapi import Cursor
from pydantic import SecretStr

from schemas.loads import LOAD_TOTALS, LoadCounts
from schemas.staging import (
    FILE_RESULT,
    KEY_COLUMNS,
    QUARANTINE_ENTRY,
    STAGED_ROW,
    column_list,
    staging_table,
)
from warehouse.file_rows import rows_of_file
from warehouse.postgres import Connection, Dsn, connect, one_row, text_array

UPSERT_LOCK = 0x62627570_73657274  # the bytes of "bbupsert": the advisory lock of the upsert
"""Upserts take this transaction-scoped advisory lock: one at a time per database, across
processes and machines (two at once contend on the same index pages and WAL)."""

REDERIVE_MARK = "rederive:"
"""`deleted_by` of a row its delivery no longer produces (a replay removed it); such a row counts
as absent: any delivery that produces its measurement again brings it back."""

SAMPLES_PER_METRIC = 3

_COLUMNS = column_list(STAGED_ROW)
_VALUES = column_list(STAGED_ROW, casts=True, prefix="s.")


def _key_match(a: str, b: str) -> str:
    return " AND ".join(
        f'{a}."{c}" = {b}."{c}"' if c == "timestamp" else f"{a}.{c} = {b}.{c}" for c in KEY_COLUMNS
    )


_REMOVED_ROW = f"t.deleted_by LIKE '{REDERIVE_MARK}%'"

# First every staged row whose key is absent is inserted (ON CONFLICT DO NOTHING: a conflict
# neither locks nor writes the existing row). A first load (the common case) inserts every
# staged row and stops there. Otherwise the rows that conflicted and must change are collected
# (_DIFF, with their old values for the counts and the dry run's samples) and updated from that
# list (_UPDATE). Everything runs under UPSERT_LOCK, so no other loader writes in between.
# The month partitions the batch writes into (migration 0008), created if missing by a function
# that runs with the table owner's rights: the loader has no DDL of its own.
_PARTITIONS = "SELECT biobridge.ensure_event_partitions($1::timestamptz[])"

_PLAIN_INSERT = f"""
INSERT INTO public.biometric_events ({_COLUMNS})
SELECT {_VALUES}
FROM pg_temp.bb_stage AS s
"""  # noqa: S608 - column names from our own contract, not input
# (bb_stage is already in key order, dedupe_newest: no sort in these inserts, ~5% faster.)

_INSERT = f"""{_PLAIN_INSERT}
ON CONFLICT ({", ".join(f'"{c}"' if c == "timestamp" else c for c in KEY_COLUMNS)}) DO NOTHING
"""

# The plain INSERT runs in a PL/pgSQL block: its EXCEPTION clause is a savepoint the ADBC driver
# cannot roll back to itself (after an error it refuses every statement but a full rollback).
# The block never fails on a held key: it reports -1 instead, and nothing it inserted remains.
_TRY_PLAIN_INSERT = f"""
DO $bb$
DECLARE n bigint;
BEGIN
    {_PLAIN_INSERT.strip()};
    GET DIAGNOSTICS n = ROW_COUNT;
    PERFORM set_config('biobridge.plain_inserted', n::text, true);
EXCEPTION WHEN unique_violation THEN
    PERFORM set_config('biobridge.plain_inserted', '-1', true);
END
$bb$
"""
_PLAIN_INSERTED = "SELECT current_setting('biobridge.plain_inserted')::bigint"

PLAIN_INSERT_PAUSE = 8
"""After a batch whose plain INSERT met a held key, this many batches of the process go straight
to ON CONFLICT (a replay or a run of redeliveries conflicts batch after batch)."""


class _PlainInsertGate:
    """Whether the next batch of new files tries the plain INSERT first (see `_insert_absent`)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._skip = 0

    def try_plain(self) -> bool:
        with self._lock:
            if self._skip:
                self._skip -= 1
                return False
            return True

    def conflicted(self) -> None:
        with self._lock:
            self._skip = PLAIN_INSERT_PAUSE


_PLAIN_GATE = _PlainInsertGate()

# A held row changes when the staged delivery may take it: a later delivery, the holder itself
# re-derived in this batch (whatever the batch now says about the key wins: the holder's new
# rows, or the newest other delivery of the batch that produces it), or a removed row coming
# back. And only when something differs, so an identical reload writes nothing.
_DIFF = f"""
CREATE TEMPORARY TABLE bb_diff AS
SELECT s.*, t.value AS old_value, t.unit AS old_unit, t.source_key AS old_source_key,
    CASE WHEN {_REMOVED_ROW} THEN 'inserted'
         WHEN (t.value, t.unit, t.metadata -> 'source_field')
              IS DISTINCT FROM (s.value, s.unit, s.metadata::jsonb -> 'source_field')
         THEN 'updated'
         ELSE 'unchanged'  -- the same measurement, now held by a later delivery
    END AS change
FROM pg_temp.bb_stage AS s
-- One index probe per staged row, in its month's partition only (LIMIT 1 keeps Postgres from
-- turning this into a hash join that reads every partition: 2 s at 2M rows, 15 s at 10M).
CROSS JOIN LATERAL (
    SELECT e.value, e.unit, e.metadata, e.source_key, e.record_index, e.delivery_seq,
        e.deleted_by
    FROM public.biometric_events AS e WHERE {_key_match("e", "s")} LIMIT 1
) AS t
WHERE (coalesce(t.delivery_seq, -1) < s.delivery_seq
       OR t.source_key IN (SELECT object_key FROM pg_temp.bb_file_results)
       OR {_REMOVED_ROW})
  AND ((t.value, t.unit, t.metadata, t.source_key, t.record_index, t.delivery_seq)
       IS DISTINCT FROM
       (s.value, s.unit, s.metadata::jsonb, s.source_key, s.record_index, s.delivery_seq)
       OR {_REMOVED_ROW})
"""  # noqa: S608 - column names from our own contract, not input

_UPDATE = f"""
UPDATE public.biometric_events AS t
SET value = d.value, unit = d.unit, metadata = d.metadata::jsonb,
    received_at = d.received_at, source_key = d.source_key, record_index = d.record_index,
    load_id = d.load_id, delivery_seq = d.delivery_seq,
    deleted_at = CASE WHEN {_REMOVED_ROW} THEN NULL ELSE t.deleted_at END,
    deleted_by = CASE WHEN {_REMOVED_ROW} THEN NULL ELSE t.deleted_by END
FROM pg_temp.bb_diff AS d
WHERE {_key_match("t", "d")}
"""  # noqa: S608 - column names from our own contract, not input

_SAMPLE = """format('%s at %s: %s %s -> %s %s (%s)', user_id, "timestamp", {old}, {new})"""

_DIFF_COUNTS = f"""
SELECT device_type, metric_type, change, count(*),
    (array_agg({
    _SAMPLE.format(
        old="old_value, coalesce(old_unit, '')", new="value, coalesce(unit, ''), source_key"
    )
} ORDER BY user_id, "timestamp"))[1:{SAMPLES_PER_METRIC}]
FROM pg_temp.bb_diff GROUP BY 1, 2, 3
"""  # noqa: S608 - fixed text

# Rows of the batch's files that were loaded before ($2: the claim saw their ledger entries name
# a load) and whose measurement the batch no longer stages: their delivery, re-derived, does not
# produce them any more.
_REMOVE = f"""
WITH removed AS (
    UPDATE public.biometric_events AS t
    SET deleted_at = now(), deleted_by = '{REDERIVE_MARK}load ' || $1::bigint
    FROM biobridge.landed_files AS r
    WHERE r.object_key = ANY($2::text[]) AND {rows_of_file("t", "r")} AND t.deleted_at IS NULL
      AND NOT EXISTS (SELECT 1 FROM pg_temp.bb_stage AS s WHERE {_key_match("s", "t")})
    RETURNING t.device_type, t.metric_type, t.user_id, t."timestamp", t.value, t.unit,
        t.source_key
)
SELECT device_type, metric_type, count(*),
    (array_agg({
    _SAMPLE.format(old="value, coalesce(unit, '')", new="'removed', '', source_key")
} ORDER BY user_id, "timestamp"))[1:{SAMPLES_PER_METRIC}]
FROM removed GROUP BY 1, 2
"""  # noqa: S608 - fixed text

_STAGED_COUNTS = """
SELECT device_type, metric_type, count(*) FROM pg_temp.bb_stage GROUP BY 1, 2
"""

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

# The batch's files are settled: they leave the queue of pending files (migration 0014).
_DEQUEUE = """
DELETE FROM biobridge.pending_files AS p USING pg_temp.bb_file_results AS r
WHERE p.object_key = r.object_key
"""

_LOAD_COUNTS = "UPDATE biobridge.loads SET {} WHERE load_id = $1".format(  # noqa: S608
    ", ".join(f"{name} = {name} + ${n}" for n, name in enumerate(LOAD_TOTALS, start=2))
)


@dataclass
class MetricChanges:
    """What a write did to one (vendor, metric): rows inserted, updated, removed, unchanged."""

    inserted: int = 0
    updated: int = 0
    removed: int = 0
    unchanged: int = 0
    samples: list[str] = field(default_factory=list)
    """A few updated or removed rows: `user at timestamp: old value unit -> new (source)`."""

    def add(self, other: MetricChanges) -> None:
        """Accumulate another batch's changes of the same metric."""
        self.inserted += other.inserted
        self.updated += other.updated
        self.removed += other.removed
        self.unchanged += other.unchanged
        room = SAMPLES_PER_METRIC - len(self.samples)
        self.samples.extend(other.samples[: max(room, 0)])


RowChanges = dict[tuple[str, str], MetricChanges]
"""Changes by (device_type, metric_type); device_type is the vendor."""

ALL_METRICS = ("*", "*")
"""The one key of `RowChanges` when a write was not counted per metric."""


_STAGING_TABLES = {
    "bb_stage": STAGED_ROW,
    "bb_quarantine": QUARANTINE_ENTRY,
    "bb_file_results": FILE_RESULT,
}
# The batch's staging tables, created if missing and empty, in one round trip.
_READY_STAGING = "DO $bb$ BEGIN {} END $bb$".format(
    " ".join(
        f"{staging_table(name, schema)}; DELETE FROM pg_temp.{name};"  # noqa: S608 - our names
        for name, schema in _STAGING_TABLES.items()
    )
)


def stage_batch(
    conn: Connection, *, stage: pa.Table, quarantine: pa.Table, file_results: pa.Table
) -> None:
    """COPY the batch into this connection's temporary tables (no WAL, nothing shared yet).

    Each table is created once per session (`staging_table`) and emptied here: at each commit
    they empty themselves, but a dry run stages batch after batch in one transaction.
    """
    with conn.cursor() as cur:
        cur.execute(_READY_STAGING)
        tables = (stage, quarantine, file_results)
        for (name, schema), table in zip(_STAGING_TABLES.items(), tables, strict=True):
            cur.adbc_ingest(name, table.cast(schema), mode="append", temporary=True)
        # No ANALYZE: the statements joining these tables with large ones run in
        # `index_probes`, and an unanalyzed table's size is estimated from its pages.


_KNOWN_MONTHS: set[tuple[str, str]] = set()
"""(database URL, month) this process has seen a partition for. A month detached since then
costs nothing worse than its rows going to the default partition."""


def ensure_partitions(url: Dsn, stage: pa.Table) -> None:
    """Create the month partitions the staged rows need and lack, committed at once on a
    connection of its own: attaching a month locks the table's default partition, and a batch
    holding that lock until its commit would stall readers and deadlock with the upsert lock.
    Months this process already saw cost nothing (no connection: ~0.1 s a batch under load)."""
    months = pc.unique(pc.floor_temporal(stage.column("timestamp"), unit="month"))
    where = url.get_secret_value() if isinstance(url, SecretStr) else url
    wanted = {(where, m.isoformat()) for m in months.to_pylist() if m is not None}
    if not wanted - _KNOWN_MONTHS:
        return
    literal = "{" + ",".join(month for _, month in sorted(wanted)) + "}"
    with connect(url, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(_PARTITIONS, (literal,))
        cur.fetchall()
    _KNOWN_MONTHS.update(wanted)


def dedupe_newest(rows: pl.DataFrame) -> pl.DataFrame:
    """One row per measurement key: the latest delivery wins (greatest `delivery_seq`, then the
    later record of the file), so the choice never depends on the order rows arrive in.

    An upsert batch must not carry the same key twice, and sorting by the key makes concurrent
    loaders take row locks in the same order, so they cannot deadlock each other.
    """
    order = [*KEY_COLUMNS, "delivery_seq", "record_index"]
    return rows.sort(order, descending=[False] * len(KEY_COLUMNS) + [True, True]).unique(
        subset=KEY_COLUMNS, keep="first", maintain_order=True
    )


def write_rows(
    conn: Connection,
    *,
    load_id: int,
    rows_staged: int,
    reloaded: Sequence[str] = (),
    by_metric: bool = False,
) -> RowChanges:
    """Move the staged rows into `biometric_events` (see the module docstring); what changed.

    `reloaded` names the batch's files a load wrote before (a replay, a reload): only their
    rows can be in the table already, and only their rows the batch no longer stages go.
    With `by_metric` (the dry run) the changes are counted per (vendor, metric) with samples;
    otherwise one entry, `ALL_METRICS`, holds the totals. The statements are the same; only the
    INSERT's count is read differently (RETURNING, grouped, costs ~13% of a first load's write).
    Call under `UPSERT_LOCK`, in the batch's transaction.
    """
    changes: RowChanges = defaultdict(MetricChanges)

    def bucket(vendor: str, metric: str) -> tuple[str, str]:
        return (vendor, metric) if by_metric else ALL_METRICS

    with conn.cursor() as cur:
        # The diff's cost estimate on a large table passes jit_above_cost: compiling it took
        # seconds per batch, for statements that run in milliseconds.
        cur.execute("SET LOCAL jit = off")
    if by_metric:
        with conn.cursor() as cur:
            cur.execute(
                f"WITH w AS ({_INSERT} RETURNING device_type, metric_type) "  # noqa: S608
                "SELECT device_type, metric_type, count(*) FROM w GROUP BY 1, 2"
            )
            for vendor, metric, n in cur.fetchall():
                changes[(vendor, metric)].inserted += int(n)
    else:
        changes[ALL_METRICS].inserted = _insert_absent(conn, plain=not reloaded)
    with conn.cursor() as cur:
        if sum(c.inserted for c in changes.values()) < rows_staged:
            staged = _staged_counts(cur) if by_metric else {ALL_METRICS: rows_staged}
            _write_conflicts(cur, changes, bucket, staged)
        if reloaded:  # files loaded before: their rows the batch no longer stages go
            cur.execute(_REMOVE, (load_id, text_array(reloaded)))
            for vendor, metric, n, samples in cur.fetchall():
                change = changes[bucket(vendor, metric)]
                change.removed += int(n)
                change.samples.extend(samples or [])
    return dict(changes)


def _insert_absent(conn: Connection, *, plain: bool) -> int:
    """Insert the staged rows whose key is absent; how many.

    A batch of files never loaded before usually holds only new keys: it is first inserted
    with a plain INSERT, in a savepoint. ON CONFLICT pays a speculative insertion per row (an
    index probe before the insert and a token after: ~30% of a first load's insert CPU,
    measured). A key already held (a redelivery) fails the plain INSERT with a unique violation:
    the savepoint is rolled back and the rows go in with ON CONFLICT DO NOTHING, as always, so
    the outcome is the same either way. Rows only ever come in under `UPSERT_LOCK`, so no other
    loader inserts a key between the two.
    """
    with conn.cursor() as cur:
        if plain and _PLAIN_GATE.try_plain():
            cur.execute(_TRY_PLAIN_INSERT)
            cur.execute(_PLAIN_INSERTED)
            (inserted,) = one_row(cur)
            if int(inserted) >= 0:
                return int(inserted)
            _PLAIN_GATE.conflicted()
        cur.execute(_INSERT)
        return int(cur.rowcount)


@contextmanager
def index_probes(cur: Cursor) -> Iterator[None]:
    """Within the block, joins probe an index row by row instead of hashing or sorting a whole
    table: right when a batch joins its few thousand staged rows with a table of millions."""
    cur.execute("SET LOCAL enable_hashjoin = off")
    cur.execute("SET LOCAL enable_mergejoin = off")
    yield
    cur.execute("RESET enable_hashjoin")
    cur.execute("RESET enable_mergejoin")


def _staged_counts(cur: Cursor) -> dict[tuple[str, str], int]:
    cur.execute(_STAGED_COUNTS)
    return {(str(v), str(m)): int(n) for v, m, n in cur.fetchall()}


def _write_conflicts(
    cur: Cursor,
    changes: RowChanges,
    bucket: Callable[[str, str], tuple[str, str]],
    staged: dict[tuple[str, str], int],
) -> None:
    """Update the conflicting staged rows that must change; count the rest as unchanged."""
    inserted = {key: entry.inserted for key, entry in changes.items()}
    cur.execute("DROP TABLE IF EXISTS pg_temp.bb_diff")
    cur.execute(_DIFF)
    in_diff: dict[tuple[str, str], int] = defaultdict(int)
    cur.execute(_DIFF_COUNTS)
    for vendor, metric, change, n, samples in cur.fetchall():
        key = bucket(vendor, metric)
        setattr(changes[key], change, getattr(changes[key], change) + int(n))
        if change == "updated":
            changes[key].samples.extend(samples or [])
        in_diff[key] += int(n)
    if in_diff:  # an identical reload writes nothing (and needs no join with the table)
        with index_probes(cur):  # per changed row, as above: never hash the whole table
            cur.execute(_UPDATE)
    for key, n in staged.items():
        # Neither inserted nor in the diff: identical to the row held, or a later delivery's.
        changes[key].unchanged += n - inserted.get(key, 0) - in_diff[key]


def apply_batch(
    conn: Connection, *, load_id: int, counts: LoadCounts, reloaded: Sequence[str] = ()
) -> LoadCounts:
    """Write the staged rows, quarantine entries and ledger states, count; then commit.

    Runs in the transaction that claimed the files. `counts` carries the file-level numbers; the
    row numbers come from what Postgres reports, so a report never states more than was written.
    """
    write_batch(conn, load_id=load_id, counts=counts, reloaded=reloaded)
    conn.commit()
    return counts


def write_batch(
    conn: Connection,
    *,
    load_id: int,
    counts: LoadCounts,
    reloaded: Sequence[str] = (),
    by_metric: bool = False,
) -> RowChanges:
    """Everything `apply_batch` does but the commit (a dry run rolls it back); the row changes
    (per metric with `by_metric`, see `write_rows`).

    All of it under the upsert's advisory lock (released at commit or rollback, also when the
    process dies). The ledger's rows change only once the lock is held: an updated ledger row
    makes every discovery that re-lists its key wait for this transaction (ON CONFLICT waits
    for the new index entry), and that wait must not include a wait for the lock.
    """
    with conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock($1)", (UPSERT_LOCK,))
        cur.fetchall()
    changes = write_rows(
        conn,
        load_id=load_id,
        rows_staged=counts.rows_staged,
        reloaded=reloaded,
        by_metric=by_metric,
    )
    add_changes(counts, changes)
    with conn.cursor() as cur:
        cur.execute(_QUARANTINE)
        # The planner hashes the whole ledger once the batch has a few hundred files (23 ms of a
        # 68 ms update at 100k ledger rows, and growing with the ledger); probing its primary key
        # per file is 40% cheaper there and stays flat.
        with index_probes(cur):
            cur.execute(_LEDGER, (load_id,))
            cur.execute(_DEQUEUE)
        cur.execute(_LOAD_COUNTS, (load_id, *counts.totals()))
    return changes


def add_changes(counts: LoadCounts, changes: RowChanges) -> None:
    """Set the row totals of `counts` from a write's changes."""
    counts.rows_inserted = sum(c.inserted for c in changes.values())
    counts.rows_updated = sum(c.updated for c in changes.values())
    counts.rows_removed = sum(c.removed for c in changes.values())
    counts.rows_unchanged = sum(c.unchanged for c in changes.values())


def apply_empty(conn: Connection, *, load_id: int, counts: LoadCounts) -> LoadCounts:
    """Add a batch's counts that wrote no rows (files set aside) to the load; then commit."""
    with conn.cursor() as cur:
        cur.execute(_LOAD_COUNTS, (load_id, *counts.totals()))
    conn.commit()
    return counts
