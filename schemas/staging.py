"""What a batch stages before it writes: the staged row (a future row of `biometric_events`),
the quarantine entry and the per-file outcome. The Arrow schemas COPYed into the temporary
staging tables and the SQL column lists of the statements that read them derive from here.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

UTC_MICROS = pa.timestamp("us", tz="UTC")

KEY_COLUMNS: tuple[str, ...] = ("user_id", "device_type", "metric_type", "timestamp")
"""A measurement's key: unique in `biometric_events`."""

_STAGED_ROW_FIELDS: list[pa.Field[Any]] = [
    pa.field("user_id", pa.string()),
    pa.field("device_type", pa.string()),
    pa.field("metric_type", pa.string()),
    pa.field("value", pa.float64()),
    pa.field("unit", pa.string()),
    pa.field("timestamp", UTC_MICROS),
    pa.field("metadata", pa.string()),  # JSON text: ADBC cannot COPY jsonb; cast in the upsert
    pa.field("received_at", UTC_MICROS),
    pa.field("source_key", pa.string()),
    pa.field("record_index", pa.int32()),
    pa.field("load_id", pa.int64()),
    pa.field("delivery_seq", pa.int64()),  # the ledger's order of deliveries: greater wins
]
STAGED_ROW = pa.schema(_STAGED_ROW_FIELDS)
"""A row of `biometric_events` as a batch stages it (everything but the `id`)."""

_QUARANTINE_ENTRY_FIELDS: list[pa.Field[Any]] = [
    pa.field("object_key", pa.string()),
    pa.field("record_index", pa.int32()),
    pa.field("field", pa.string()),
    pa.field("reason", pa.string()),
    pa.field("expected", pa.string()),
    pa.field("found", pa.string()),
    pa.field("raw_excerpt", pa.string()),
    pa.field("load_id", pa.int64()),
]
QUARANTINE_ENTRY = pa.schema(_QUARANTINE_ENTRY_FIELDS)
"""A row of `biobridge.quarantine` as a batch stages it."""

_FILE_RESULT_FIELDS: list[pa.Field[Any]] = [
    pa.field("object_key", pa.string()),
    pa.field("state", pa.string()),
    pa.field("rows_loaded", pa.int32()),
    pa.field("records_quarantined", pa.int32()),
    pa.field("size_bytes", pa.int64()),
    pa.field("sha256", pa.string()),
    pa.field("delivery_id", pa.string()),
    pa.field("note", pa.string()),
]
FILE_RESULT = pa.schema(_FILE_RESULT_FIELDS)
"""A file's outcome in a batch: what its ledger row (`biobridge.landed_files`) becomes."""

JSON_COLUMNS = frozenset({"metadata"})


_SQL_TYPES: dict[pa.DataType, str] = {
    pa.string(): "text",
    pa.float64(): "double precision",
    pa.int32(): "integer",
    pa.int64(): "bigint",
    UTC_MICROS: "timestamptz",
}


def staging_table(name: str, schema: pa.Schema) -> str:
    """SQL: create this session's temporary table `name` for rows of `schema`, unless it exists.

    It empties itself at every commit (and a rollback discards what it was given), so a batch
    appends to it instead of creating it afresh (ADBC's `mode="replace"` dropped and created it,
    ~60 catalogue rows written and removed each time). The column types are those ADBC itself
    gives each Arrow type.
    """
    columns = ", ".join(f"{column_list(pa.schema([f]))} {_SQL_TYPES[f.type]}" for f in schema)
    return f"CREATE TEMPORARY TABLE IF NOT EXISTS {name} ({columns}) ON COMMIT DELETE ROWS"


def column_list(schema: pa.Schema, *, prefix: str = "", casts: bool = False) -> str:
    """`schema`'s names as an SQL column list (quoted where needed, optionally `prefix.`-ed;
    with `casts`, JSON text columns are cast to jsonb)."""
    names = []
    for name in schema.names:
        sql = f'{prefix}"{name}"' if name == "timestamp" else f"{prefix}{name}"
        names.append(f"{sql}::jsonb" if casts and name in JSON_COLUMNS else sql)
    return ", ".join(names)
