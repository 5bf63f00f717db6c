"""Load stage: one transaction per batch puts rows, quarantine entries and ledger states in place.

The batch's rows are COPYed (ADBC ingest of Arrow) into a temporary staging table, then one
set-based upsert moves them into `biometric_events`: a measurement is replaced only by a delivery
received later, so loading the same file twice changes nothing. The ledger rows of the batch were
locked when they were claimed; they change state in the same transaction, so a crash at any point
leaves every file either fully loaded or still pending.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import polars as pl
import pyarrow as pa

Connection = Any  # adbc_driver_manager.dbapi.Connection (untyped upstream)

KEY_COLUMNS = ["user_id", "device_type", "metric_type", "timestamp"]

STAGE_SCHEMA = pa.schema(
    [
        ("user_id", pa.string()),
        ("device_type", pa.string()),
        ("metric_type", pa.string()),
        ("value", pa.float64()),
        ("unit", pa.string()),
        ("timestamp", pa.timestamp("us", tz="UTC")),
        ("metadata", pa.string()),
        ("received_at", pa.timestamp("us", tz="UTC")),
        ("source_key", pa.string()),
        ("record_index", pa.int32()),
        ("load_id", pa.int64()),
    ]
)

QUARANTINE_SCHEMA = pa.schema(
    [
        ("object_key", pa.string()),
        ("record_index", pa.int32()),
        ("field", pa.string()),
        ("reason", pa.string()),
        ("expected", pa.string()),
        ("found", pa.string()),
        ("raw_excerpt", pa.string()),
        ("load_id", pa.int64()),
    ]
)

FILE_RESULT_SCHEMA = pa.schema(
    [
        ("object_key", pa.string()),
        ("state", pa.string()),
        ("rows_loaded", pa.int32()),
        ("records_quarantined", pa.int32()),
        ("size_bytes", pa.int64()),
        ("sha256", pa.string()),
        ("delivery_id", pa.string()),
        ("note", pa.string()),
    ]
)

_UPSERT = """
WITH upserted AS (
    INSERT INTO public.biometric_events AS t
        (user_id, device_type, metric_type, value, unit, "timestamp", metadata, received_at,
         source_key, record_index, load_id)
    SELECT user_id, device_type, metric_type, value, unit, "timestamp", metadata::jsonb,
           received_at, source_key, record_index, load_id
    FROM pg_temp.bb_stage  -- already in key order (dedupe_newest): no sort here (~5% faster)
    ON CONFLICT (user_id, device_type, metric_type, "timestamp") DO UPDATE
    SET value = EXCLUDED.value, unit = EXCLUDED.unit, metadata = EXCLUDED.metadata,
        received_at = EXCLUDED.received_at, source_key = EXCLUDED.source_key,
        record_index = EXCLUDED.record_index, load_id = EXCLUDED.load_id
    WHERE (EXCLUDED.received_at, EXCLUDED.source_key)
        > (coalesce(t.received_at, '-infinity'::timestamptz), coalesce(t.source_key, ''))
    RETURNING (xmax = 0) AS inserted
)
SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) FROM upserted
"""

_QUARANTINE = """
INSERT INTO biobridge.quarantine
    (object_key, record_index, field, reason, expected, found, raw_excerpt, load_id)
SELECT object_key, record_index, field, reason, expected, found, raw_excerpt, load_id
FROM pg_temp.bb_quarantine
"""

_LEDGER = """
UPDATE biobridge.landed_files AS f
SET state = r.state, load_id = $1, loaded_at = now(), rows_loaded = r.rows_loaded,
    records_quarantined = r.records_quarantined, size_bytes = r.size_bytes, sha256 = r.sha256,
    delivery_id = r.delivery_id, note = r.note, attempts = f.attempts + 1, last_error = NULL
FROM pg_temp.bb_file_results AS r
WHERE f.object_key = r.object_key
"""

_LOAD_COUNTS = """
UPDATE biobridge.loads SET
    files_read = files_read + $2, files_loaded = files_loaded + $3,
    files_quarantined = files_quarantined + $4, files_deferred = files_deferred + $5,
    rows_inserted = rows_inserted + $6, rows_updated = rows_updated + $7,
    rows_unchanged = rows_unchanged + $8, rows_quarantined = rows_quarantined + $9
WHERE load_id = $1
"""


@dataclass
class LoadCounts:
    """What one batch (or a whole run, summed) did; the numbers come from Postgres itself."""

    files_read: int = 0
    files_loaded: int = 0
    files_quarantined: int = 0
    files_deferred: int = 0
    rows_staged: int = 0
    rows_inserted: int = 0
    rows_updated: int = 0
    rows_unchanged: int = 0
    records_quarantined: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    drift: Counter[str] = field(default_factory=Counter)
    lag_seconds_max: float = 0.0

    def add(self, other: LoadCounts) -> None:
        """Accumulate another batch's counts into this one."""
        for name in (
            "files_read",
            "files_loaded",
            "files_quarantined",
            "files_deferred",
            "rows_staged",
            "rows_inserted",
            "rows_updated",
            "rows_unchanged",
            "records_quarantined",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.reasons.update(other.reasons)
        self.drift.update(other.drift)
        self.lag_seconds_max = max(self.lag_seconds_max, other.lag_seconds_max)


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
            ("bb_stage", stage, STAGE_SCHEMA),
            ("bb_quarantine", quarantine, QUARANTINE_SCHEMA),
            ("bb_file_results", file_results, FILE_RESULT_SCHEMA),
        ):
            cur.adbc_ingest(name, table.cast(schema), mode="replace", temporary=True)
        # Statistics for the temp table, so the ledger update probes the ledger's primary key
        # instead of scanning the whole (growing) ledger once per batch.
        cur.execute("ANALYZE pg_temp.bb_file_results")


def apply_batch(conn: Connection, *, load_id: int, counts: LoadCounts) -> LoadCounts:
    """Upsert the staged rows, write quarantine entries, move the ledger, count; then commit.

    Runs in the transaction that claimed the files. `counts` carries the file-level numbers; the
    row numbers come from what Postgres reports, so a report never states more than was written.
    """
    with conn.cursor() as cur:
        cur.execute(_UPSERT)
        inserted, updated = (int(n) for n in cur.fetchone())
        cur.execute(_QUARANTINE)
        cur.execute(_LEDGER, (load_id,))
        cur.execute("SELECT count(*) FROM pg_temp.bb_stage")
        (staged,) = cur.fetchone()
        counts.rows_staged = int(staged)
        counts.rows_inserted = inserted
        counts.rows_updated = updated
        counts.rows_unchanged = counts.rows_staged - inserted - updated
        cur.execute(
            _LOAD_COUNTS,
            (
                load_id,
                counts.files_read,
                counts.files_loaded,
                counts.files_quarantined,
                counts.files_deferred,
                counts.rows_inserted,
                counts.rows_updated,
                counts.rows_unchanged,
                counts.records_quarantined,
            ),
        )
    conn.commit()
    return counts
