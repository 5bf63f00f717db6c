"""Row accounting for `verify`: re-flatten loaded files and find each measurement in the table.

We do not store which keys a file produced, so the exact check re-reads the files (in bounded
batches, through the same `plan_batch` the loader uses) and stages their measurement keys in a
temporary table. One join then classifies every key: present from this file, superseded by a
later delivery (the upsert's own rule: a greater `delivery_seq`, docs/ordering.md), or lost. A
second join finds the reverse: rows that name a file as their source although it yields no such key.

`plan_batch` keeps the newest delivery of a key within the batch. That is enough: the newest of a
key's deliveries is the one the table must hold (or something newer), and if it does, the older
ones are superseded by it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import pyarrow as pa

from landing.store import ObjectNotFound, ObjectStore, StoreError, StoreUnavailable
from schemas.staging import STAGED_ROW
from tasks.batch import plan_batch
from tasks.load import REDERIVE_MARK
from tasks.read import LandedFile, fetch_objects
from warehouse.file_rows import rows_of_file
from warehouse.postgres import Connection

STAGE_COLUMNS = [name for name in STAGED_ROW.names if name not in ("metadata", "load_id")]
"""The staged row's columns a check needs: the key, the value, the lineage and the order."""

# One row per (file, outcome): how many of the file's staged keys fall in each class.
_FORWARD = f"""
WITH c AS (
    SELECT s.source_key, s.user_id, s.metric_type, s."timestamp", e.source_key AS held_by,
        CASE
            WHEN e.id IS NULL OR e.deleted_by LIKE '{REDERIVE_MARK}%' THEN 'missing'
            WHEN coalesce(e.delivery_seq, -1) < s.delivery_seq THEN 'older'
            WHEN e.source_key IS DISTINCT FROM s.source_key THEN 'superseded'
            WHEN e.record_index IS DISTINCT FROM s.record_index
                OR (e.value = s.value AND e.unit IS NOT DISTINCT FROM s.unit) THEN 'present'
            ELSE 'changed'
        END AS outcome
    FROM pg_temp.bb_verify_stage AS s
    LEFT JOIN public.biometric_events AS e
        USING (user_id, device_type, metric_type, "timestamp")
)
SELECT source_key, outcome, count(*),
    min(user_id || ' ' || metric_type || ' at ' || "timestamp"::text
        || coalesce(' (held by ' || held_by || ')', ''))
FROM c GROUP BY source_key, outcome
"""  # noqa: S608 - fixed text

# Rows naming a file of the batch whose key the file does not produce (or only as an older copy).
# Rows a replay removed (its delivery no longer produces them) are not rows of the file any more.
_REVERSE = f"""
SELECT e.source_key, count(*), min(e.id)
FROM pg_temp.bb_verify_files AS f
JOIN biobridge.landed_files AS l USING (object_key)
JOIN public.biometric_events AS e ON {rows_of_file("e", "l")}
LEFT JOIN pg_temp.bb_verify_stage AS s USING (user_id, device_type, metric_type, "timestamp")
WHERE (s.source_key IS NULL OR s.delivery_seq < coalesce(e.delivery_seq, -1))
  AND coalesce(e.deleted_by, '') NOT LIKE '{REDERIVE_MARK}%'
GROUP BY e.source_key
"""  # noqa: S608 - fixed text

_ORDER = """
SELECT object_key, l.delivery_seq
FROM pg_temp.bb_verify_files JOIN biobridge.landed_files AS l USING (object_key)
"""


@dataclass
class RowTally:
    """What the re-flattening found, summed over the checked files.

    Every re-flattened row is counted once: present + superseded + lost = rows_reflattened.
    """

    files_checked: int = 0
    rows_loaded_ledger: int = 0
    rows_reflattened: int = 0
    keys_present: int = 0
    keys_superseded: int = 0
    keys_lost: int = 0
    # (kind, object key, detail)
    problems: list[tuple[str, str, str]] = field(default_factory=list)


def check_loaded_files(
    conn: Connection,
    store: ObjectStore,
    files: Sequence[tuple[str, int | None]],
    *,
    now: datetime,
    tally: RowTally,
) -> None:
    """Check one batch of loaded files, `(object_key, ledger rows_loaded)`, into `tally`."""
    landed = _fetch_readable(store, [key for key, _ in files], tally)
    if not landed:
        return
    keys = pa.table({"object_key": pa.array([f.key for f in landed], pa.string())})
    with conn.cursor() as cur:
        cur.adbc_ingest("bb_verify_files", keys, mode="replace", temporary=True)
        cur.execute("ANALYZE pg_temp.bb_verify_files")
        cur.execute(_ORDER)
        order = {str(k): int(n) for k, n in cur.fetchall()}
    plan = plan_batch(landed, load_id=0, now=now, delivery_order=order)
    ledger_rows = dict(files)
    for result in plan.file_results.to_pylist():
        key, state, rows = result["object_key"], result["state"], result["rows_loaded"]
        tally.files_checked += 1
        tally.rows_loaded_ledger += ledger_rows[key] or 0
        tally.rows_reflattened += rows
        if state != "loaded" or rows != ledger_rows[key]:
            tally.problems.append(
                (
                    "reflatten_mismatch",
                    key,
                    f"ledger: loaded with {ledger_rows[key]} rows; re-flattening now gives "
                    f"{state} with {rows} rows. The flattener changed since the load (replay "
                    "the file with `biobridge ingest --mode replay --state loaded`) or the "
                    "ledger is wrong",
                )
            )
    stage = plan.stage.select(STAGE_COLUMNS)
    with conn.cursor() as cur:
        cur.adbc_ingest("bb_verify_stage", stage, mode="replace", temporary=True)
        cur.execute("ANALYZE pg_temp.bb_verify_stage")
        cur.execute(_FORWARD)
        forward = cur.fetchall()
        cur.execute(_REVERSE)
        reverse = cur.fetchall()
    # Rows the batch's newest-delivery rule dropped: a later delivery of the same key is staged.
    tally.keys_superseded += sum(r["rows_loaded"] for r in plan.file_results.to_pylist())
    tally.keys_superseded -= stage.num_rows
    for key, outcome, count, example in forward:
        if outcome == "present":
            tally.keys_present += count
        elif outcome == "superseded":
            tally.keys_superseded += count
        else:
            tally.keys_lost += count
            tally.problems.append(_lost(key, outcome, int(count), example))
    for key, count, row_id in reverse:
        tally.problems.append(
            (
                "foreign_row",
                key,
                f"{count} row(s) of biometric_events (e.g. id={row_id}) name this file as their "
                "source, but re-flattening it yields no such measurement (or an older copy): "
                "the row's lineage is wrong",
            )
        )


def _lost(key: str, outcome: str, count: int, example: str) -> tuple[str, str, str]:
    what = {
        "missing": "are missing from biometric_events",
        "older": "are held by an older delivery instead (the upsert should have replaced it)",
        "changed": "are present from this file with a different value or unit",
    }[outcome]
    kind = "changed_rows" if outcome == "changed" else "missing_rows"
    return (
        kind,
        key,
        f"{count} measurement(s) of this loaded file {what} and were not superseded by a later "
        f"delivery; e.g. {example}. Reload it: `biobridge ingest --mode replay --state loaded`",
    )


def _fetch_readable(store: ObjectStore, keys: list[str], tally: RowTally) -> list[LandedFile]:
    """The batch's files; one that vanished or cannot be read becomes a problem, not a crash."""
    try:
        return fetch_objects(store, keys)
    except StoreUnavailable:
        raise
    except StoreError:
        pass  # find the culprit(s) one by one below
    found: list[LandedFile] = []
    for key in keys:
        try:
            found.extend(fetch_objects(store, [key]))
        except ObjectNotFound:
            tally.problems.append(
                ("missing_object", key, "loaded in the ledger but gone from the store")
            )
        except StoreUnavailable:
            raise
        except StoreError as exc:
            tally.problems.append(("unreadable_object", key, f"cannot be read: {exc}"))
    return found
