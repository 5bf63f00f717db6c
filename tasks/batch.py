"""One batch, end to end: claim pending files, read, parse, flatten and validate, load.

`plan_batch` is the pure middle (bytes in, Arrow tables out) so it can be tested and benchmarked
without Postgres or Prefect; `process_batch` wraps it between the claim and the commit.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import polars as pl
import pyarrow as pa

from landing.store import ObjectStore
from schemas.loads import LoadCounts
from schemas.staging import FILE_RESULT, QUARANTINE_ENTRY, STAGED_ROW
from tasks.flatten import Flattened, FlattenInput, Issue, flatten_many, is_pointer, resource_of
from tasks.load import apply_batch, apply_empty, dedupe_newest, ensure_partitions, stage_batch
from tasks.read import LandedFile, ParseFailure, excerpt, fetch_objects, parse_body
from tasks.retry import is_retryable
from tasks.runtime import database_url
from warehouse.ledger import (
    Attempts,
    claim_pending,
    close_batch,
    discard_batch,
    failed_attempts,
    open_batch,
    set_aside,
)
from warehouse.postgres import Connection, Dsn

log = logging.getLogger(__name__)
_INDEX = re.compile(r"\[\d+\]")


@dataclass(frozen=True)
class BatchSpec:
    """Which pending files a batch may claim."""

    limit: int
    vendors: tuple[str, ...]
    received_from: datetime | None = None
    received_until: datetime | None = None
    max_bytes: int = 32 * 2**20
    """Bodies read per batch, at most (one larger body is read alone)."""
    alone_bytes: int = 4 * 2**20
    """A body at least this large is loaded in a batch of its own."""
    max_attempts: int = 2
    """A file whose batch never committed this many times while it was alone is set aside."""


@dataclass
class BatchPlan:
    """What a batch will write: staged rows, quarantine entries, per-file outcomes, counts."""

    stage: pa.Table
    quarantine: pa.Table
    file_results: pa.Table
    counts: LoadCounts


@dataclass(frozen=True)
class _WholeFile:
    file_no: int
    field: str
    reason: str
    expected: str
    found: str


def reason_group(field: str, expected: str) -> str:
    """A short, stable label for a quarantine reason, used to rank the top reasons of a run."""
    return f"{_INDEX.sub('[]', field)}: expected {expected}"


def plan_batch(
    files: Sequence[LandedFile],
    *,
    load_id: int,
    now: datetime | None = None,
    delivery_order: Mapping[str, int] | None = None,
) -> BatchPlan:
    """Turn fetched files into the tables `stage_batch` and `apply_batch` load. Pure: no I/O.

    `delivery_order` is each file's `landed_files.delivery_seq` (the order deliveries became
    known; greater wins, docs/ordering.md). Without a ledger (tests, benchmarks) the files are
    numbered by (received_at, key).
    """
    now = now or datetime.now(UTC)
    if delivery_order is None:
        by_receipt = sorted(files, key=lambda f: (f.meta.received_at, f.key))
        delivery_order = {f.key: n for n, f in enumerate(by_receipt, start=1)}
    counts = LoadCounts(files_read=len(files))
    sorted_files = _classify(files)
    flat = _flatten_isolating_failures(sorted_files.inputs, files, sorted_files.whole)
    for field_path, seen in flat.drift.items():
        # Drift keys are sender-chosen: they go to `loads.drift` (jsonb refuses \u0000).
        counts.drift[excerpt(field_path)] += seen
    rows = flat.rows
    rows_per_file: dict[int, int] = dict(rows.group_by("file_no").len().iter_rows())
    issues: list[_WholeFile | Issue] = [*sorted_files.whole, *flat.issues]
    q_rows, bad_records = _quarantine_rows(files, issues, load_id=load_id, counts=counts)
    results = _file_results(
        files,
        rows_per_file=rows_per_file,
        bad_records=bad_records,
        deferred=sorted_files.deferred,
        counts=counts,
        now=now,
    )
    return BatchPlan(
        stage=_staged_rows(rows, _files_frame(files, delivery_order), load_id=load_id)
        .to_arrow()
        .cast(STAGED_ROW),
        quarantine=pa.Table.from_pylist(q_rows, schema=QUARANTINE_ENTRY),
        file_results=results,
        counts=counts,
    )


@dataclass
class _Sorted:
    """A batch's files by what happens to them: flattened, rejected whole, or deferred."""

    inputs: list[FlattenInput]
    whole: list[_WholeFile]
    deferred: dict[int, str]


def _classify(files: Sequence[LandedFile]) -> _Sorted:
    """Parse each body and detect its resource: flatten it, reject it whole, or defer a pointer."""
    out = _Sorted(inputs=[], whole=[], deferred={})
    for no, f in enumerate(files):
        payload = parse_body(f)
        if isinstance(payload, ParseFailure):
            out.whole.append(
                _WholeFile(no, payload.field, payload.reason, payload.expected, payload.found)
            )
            continue
        try:
            resource = resource_of(f.meta.vendor, payload, f.meta.headers, f.meta.context)
        except ValueError as exc:
            out.whole.append(
                _WholeFile(
                    no, "<body>", f"{f.key}: {exc}", "a known payload shape", excerpt(f.body)
                )
            )
            continue
        if is_pointer(f.meta.vendor, resource):
            out.deferred[no] = (
                f"{f.meta.vendor} {resource}: points at data held by the vendor; the fetch "
                "stage resolves it (biobridge.notifications)"
            )
            continue
        context = {**f.meta.context, "device_type": f.meta.vendor}
        out.inputs.append(
            FlattenInput(
                file_no=no,
                vendor=f.meta.vendor,
                resource=resource,
                payload=payload,
                context=context,
            )
        )
    return out


def _files_frame(files: Sequence[LandedFile], delivery_order: Mapping[str, int]) -> pl.DataFrame:
    """Per file of the batch: what its rows carry as lineage (key, order, receipt, delivery id)."""
    # Arrow converts the receipt datetimes ~5x faster than a Polars Series of Python datetimes.
    received = pa.array([f.meta.received_at for f in files], pa.timestamp("us", "UTC"))
    return pl.DataFrame(
        {
            "file_no": pl.Series(range(len(files)), dtype=pl.Int64),
            "source_key": [f.key for f in files],
            "delivery_seq": pl.Series([delivery_order[f.key] for f in files], dtype=pl.Int64),
            "received_at": pl.Series(received).cast(pl.Datetime("us", "UTC")),
            "delivery_id": [f.meta.delivery_id for f in files],
        }
    )


def _staged_rows(rows: pl.DataFrame, lineage: pl.DataFrame, *, load_id: int) -> pl.DataFrame:
    """The `STAGED_ROW` columns of the batch's rows, one per measurement key (newest wins).

    `lineage` is `_files_frame` (row n is file n). Only the delivery order is attached before
    the dedupe sorts and filters the rows: the wide lineage text (source key, delivery id) is
    gathered onto the surviving rows after it, not copied through the sort.
    """
    order = lineage["delivery_seq"]
    newest = dedupe_newest(rows.with_columns(delivery_seq=order.gather(rows["file_no"])))
    carried = lineage.select("source_key", "received_at", "delivery_id")[newest["file_no"]]
    derived = {
        "metadata": pl.struct("source_field", "delivery_id").struct.json_encode(),
        "record_index": pl.col("record_index").cast(pl.Int32),
        "load_id": pl.lit(load_id, dtype=pl.Int64),
    }
    return pl.concat([newest, carried], how="horizontal").select(
        derived.get(name, pl.col(name)).alias(name) for name in STAGED_ROW.names
    )


def _quarantine_rows(
    files: Sequence[LandedFile],
    issues: Sequence[_WholeFile | Issue],
    *,
    load_id: int,
    counts: LoadCounts,
) -> tuple[list[dict[str, object]], dict[int, set[int | None]]]:
    """Quarantine entries of whole files and records; which records of each file are bad."""
    q_rows: list[dict[str, object]] = []
    bad_records: dict[int, set[int | None]] = {}
    for issue in issues:
        record_index = issue.record_index if isinstance(issue, Issue) else None
        q_rows.append(
            _quarantine_row(
                files[issue.file_no],
                record_index,
                issue.field,
                issue.reason,
                issue.expected,
                issue.found,
                load_id,
            )
        )
        bad_records.setdefault(issue.file_no, set()).add(record_index)
        counts.reasons[reason_group(issue.field, issue.expected)] += 1
    return q_rows, bad_records


def _file_results(
    files: Sequence[LandedFile],
    *,
    rows_per_file: dict[int, int],
    bad_records: dict[int, set[int | None]],
    deferred: dict[int, str],
    counts: LoadCounts,
    now: datetime,
) -> pa.Table:
    """Each file's outcome (loaded, quarantined or deferred) and the batch's file counts.

    Built as columns (one list per `FILE_RESULT` field), not a dict per file.
    """
    states: list[str] = []
    loaded_rows: list[int] = []
    bad_counts: list[int] = []
    no_bad: set[int | None] = set()
    for no in range(len(files)):
        loaded = int(rows_per_file.get(no, 0))
        bad = bad_records.get(no, no_bad)
        if no in deferred:
            states.append("deferred")
        elif None in bad or (bad and loaded == 0):
            states.append("quarantined")
        else:
            states.append("loaded")
        loaded_rows.append(loaded)
        bad_counts.append(len(bad))
    counts.files_deferred += states.count("deferred")
    counts.files_quarantined += states.count("quarantined")
    counts.files_loaded += states.count("loaded")
    counts.records_quarantined += sum(bad_counts)
    if files:
        oldest = min(f.meta.received_at for f in files)
        counts.lag_seconds_max = max(counts.lag_seconds_max, (now - oldest).total_seconds())
    metas = [f.meta for f in files]
    columns = {
        "object_key": [f.key for f in files],
        "state": states,
        "rows_loaded": loaded_rows,
        "records_quarantined": bad_counts,
        "size_bytes": [m.size for m in metas],
        "sha256": [m.sha256 for m in metas],
        "delivery_id": [m.delivery_id for m in metas],
        "note": [deferred.get(no) for no in range(len(files))],
    }
    return pa.Table.from_pydict(
        {name: columns[name] for name in FILE_RESULT.names}, schema=FILE_RESULT
    )


def _flatten_isolating_failures(
    inputs: list[FlattenInput], files: Sequence[LandedFile], whole: list[_WholeFile]
) -> Flattened:
    """Flatten the batch at once; if a flattener crashes, find the file that crashes it.

    A crash is a Biobridge bug, not the vendor's: the file is quarantined with the error so the
    rest of the batch (and every later run) still loads, and `replay` reloads it after a fix.
    Running out of memory is no bug of the file's: it fails the batch like a killed run does, so
    it counts as an attempt and a file that keeps failing alone is set aside (`claim_pending`).
    """
    try:
        return flatten_many(inputs)
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001 - isolated per file below, where it is reported
        log.warning(
            "flattening a batch failed (%s: %s); isolating the file", type(exc).__name__, exc
        )
    parts: list[Flattened] = []
    for item in inputs:
        try:
            parts.append(flatten_many([item]))
        except MemoryError:
            raise
        except Exception as exc:  # noqa: BLE001 - becomes a quarantine row with the reason
            whole.append(
                _WholeFile(
                    item.file_no,
                    "<flattener>",
                    f"{files[item.file_no].key}: flattener {item.vendor}/{item.resource} failed "
                    f"({type(exc).__name__}: {exc}); this is a Biobridge bug: replay after the fix",
                    "a payload the flattener handles",
                    excerpt(files[item.file_no].body),
                )
            )
    return Flattened.concat(parts)


def _quarantine_row(
    f: LandedFile,
    record_index: int | None,
    field: str,
    reason: str,
    expected: str,
    found: str,
    load_id: int,
) -> dict[str, object]:
    return {
        "object_key": f.key,
        "record_index": record_index,
        "field": excerpt(field),
        "reason": excerpt(reason, 1000),
        "expected": excerpt(expected),
        "found": excerpt(found),
        "raw_excerpt": excerpt(f.body),
        "load_id": load_id,
    }


def process_batch(
    conn: Connection,
    store: ObjectStore,
    *,
    load_id: int,
    spec: BatchSpec,
    url: Dsn | None = None,
) -> LoadCounts | None:
    """Claim, read, plan and load one batch in one transaction; None when nothing is pending.

    Before anything is parsed, the batch is recorded on a connection of its own (`open_batch`);
    a batch that never commits leaves that record behind, one failed attempt for each of its
    files. Files with failed attempts are loaded in ever smaller groups, then alone; a file
    that failed alone `spec.max_attempts` times is set aside (quarantined, with the reason), so
    a body that kills every run cannot hold back the files behind it.
    """
    claimed = claim_pending(
        conn,
        limit=spec.limit,
        vendors=spec.vendors,
        received_from=spec.received_from,
        received_until=spec.received_until,
    )
    if not claimed:
        conn.rollback()
        return None
    keys = claimed.keys
    attempts = failed_attempts(conn, keys)
    if poisoned := {
        k: _set_aside_reason(k, a) for k, a in attempts.items() if a.alone >= spec.max_attempts
    }:
        set_aside(conn, load_id=load_id, poisoned=poisoned)
        counts = LoadCounts(files_read=len(poisoned), files_quarantined=len(poisoned))
        counts.records_quarantined = len(poisoned)
        counts.reasons[reason_group("<file>", "a file a run can load")] += len(poisoned)
        return apply_empty(conn, load_id=load_id, counts=counts)
    keys = _next_group(keys, attempts, limit=spec.limit)
    files = fetch_within_budget(store, keys, max_bytes=spec.max_bytes, alone_bytes=spec.alone_bytes)
    dsn = url or database_url()
    batch_id = open_batch(dsn, load_id=load_id, keys=[f.key for f in files])
    try:
        plan = plan_batch(files, load_id=load_id, delivery_order=claimed.order)
        ensure_partitions(dsn, plan.stage)
        stage_batch(
            conn, stage=plan.stage, quarantine=plan.quarantine, file_results=plan.file_results
        )
        plan.counts.rows_staged = plan.stage.num_rows
        close_batch(conn, batch_id)
        # One upsert at a time per database (an advisory lock, across processes): two at once
        # contend on the same index pages and WAL (measured: 39 s of upsert time for 874k rows
        # in parallel, 26 s one after the other), while reading, flattening and staging the
        # next batch overlap the current write.
        reloaded = [f.key for f in files if f.key in claimed.loaded_before]
        return apply_batch(conn, load_id=load_id, counts=plan.counts, reloaded=reloaded)
    except Exception as exc:
        # A lost connection or a store outage says nothing about the files: it must not count
        # as an attempt (the task retries it), or repeated outages would set good files aside.
        if is_retryable(exc):
            discard_batch(dsn, batch_id)
        raise


def fetch_within_budget(
    store: ObjectStore, keys: Sequence[str], *, max_bytes: int, alone_bytes: int
) -> list[LandedFile]:
    """Fetch `keys` in order while the bodies fit in `max_bytes` (always at least one).

    A body of `alone_bytes` or more is loaded alone: first in line, it is the whole batch;
    later, the batch stops before it (it stays pending, first in line for the next batch).
    Parsing and flattening cost a multiple of the bytes read (about 25x for a large JSON
    body), so this bound, not the file count, is what bounds a batch's memory. Reads go in
    doubling chunks (1, 2, 4 ... 64 keys, fewer when the budget left is small), so a run of
    large bodies is never read all at once and small ones are still read in bulk.
    """
    files: list[LandedFile] = []
    total = largest = 0
    start = 0
    while start < len(keys):
        room = (max_bytes - total) // max(largest, 1)
        step = max(1, min(64, len(files) + 1, room))
        for f in fetch_objects(store, keys[start : start + step]):
            size = len(f.body)
            if files and (size >= alone_bytes or total + size > max_bytes):
                return files
            files.append(f)
            total += size
            largest = max(largest, size)
            if size >= alone_bytes:
                return files
        start += step
    return files


def _next_group(keys: list[str], attempts: dict[str, Attempts], *, limit: int) -> list[str]:
    """The claimed files this batch loads: all of them, unless some have failed attempts.

    Then only the first of those, with the ones after it that failed as often, in a group of
    limit / 4^attempts files (at least 1): a file that kills its batch is alone within a few
    runs, and the files that were only its neighbours load on the way there.
    """
    suspects = [k for k in keys if k in attempts]
    if not suspects:
        return keys
    first = attempts[suspects[0]].total
    size = max(1, limit // 4**first)
    return [k for k in suspects if attempts[k].total >= first][:size]


def _set_aside_reason(key: str, attempts: Attempts) -> str:
    return (
        f"{key}: set aside after {attempts.total} runs died or failed while loading it "
        f"({attempts.alone} of them with this file alone, e.g. out of memory or killed); "
        "the body is kept in the store: replay it after a fix"
    )
