"""Accounting check: every landed object is accounted for, and every loaded row traces to one.

`verify` reads one consistent snapshot of the database (a REPEATABLE READ transaction taken
before the store is listed, so every ledger row it sees has its object in the listing) and checks:

a. every landed object of the window is in the ledger (objects not yet discovered are fine while
   younger than the settle window plus a grace period);
b. every ledger row's object is in the store;
c. every measurement of every `loaded` file is in `biometric_events`, from that file or from a
   later delivery (see `ops.verify_rows`);
d. every row of `biometric_events` names a file the ledger has loaded (rows of the old system,
   without a source, are counted as legacy rows);
e. no measurement key is duplicated;
f. every quarantined file has an open quarantine entry;
g. every row's `load_id` is a load record;
h. every pointer notification (a `deferred` file) is in `biobridge.notifications` once a run has
   had the chance to see it, in a state that says where it stands (fetched, resolved_empty,
   deleted, rate_limited, retry_later, needs_reauth or failed, with the reason), and every
   document fetched for it is in the ledger (discovered once the settle window passed);
i. on a local store, bodies the receiver acknowledged that are still only in its log (not
   objects yet) are counted, and are a discrepancy once older than the settle window plus grace.

It writes nothing: staging tables are temporary and the transaction is rolled back.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import islice
from typing import Any, Literal

import pyarrow as pa

from landing.commit_log import LOG_FOLDER, backlog
from landing.keys import RAW_PREFIX, VENDORS, hour_prefixes, parse_key
from landing.local_store import LocalStore
from landing.store import ObjectStore
from ops.verify_rows import RowTally, check_loaded_files
from tasks.discover import SETTLE
from warehouse.postgres import Connection, one_row

# Twice the default ingest interval (60 s): a discovery run may be in flight or just missed.
DEFAULT_GRACE = timedelta(seconds=120)
LIST_CHUNK = 20_000
FILE_BATCH = 2_000

_WINDOW = (
    "f.vendor = ANY($1::text[]) AND f.received_at >= coalesce($2::timestamptz, '-infinity') "
    "AND f.received_at < $3::timestamptz"
)

_LEDGER_STATES = (
    f"SELECT f.state, count(*) FROM biobridge.landed_files AS f WHERE {_WINDOW} GROUP BY 1"  # noqa: S608 - fixed text
)

_UNDISCOVERED = """
SELECT o.object_key, o.received_at, o.landed_at FROM pg_temp.bb_verify_objects AS o
WHERE NOT EXISTS (SELECT 1 FROM biobridge.landed_files AS f WHERE f.object_key = o.object_key)
ORDER BY o.landed_at, o.object_key
"""

_NOT_IN_STORE = f"""
SELECT f.object_key, f.state FROM biobridge.landed_files AS f
WHERE {_WINDOW} AND NOT EXISTS (
    SELECT 1 FROM pg_temp.bb_verify_objects AS o WHERE o.object_key = f.object_key)
ORDER BY f.object_key
"""  # noqa: S608 - fixed text

_LOADED_PAGE = f"""
SELECT f.object_key, f.rows_loaded FROM biobridge.landed_files AS f
JOIN pg_temp.bb_verify_objects AS o USING (object_key)
WHERE {_WINDOW} AND f.state = 'loaded' AND f.object_key > $4
ORDER BY f.object_key LIMIT $5
"""  # noqa: S608 - fixed text

_NO_OPEN_QUARANTINE = f"""
SELECT f.object_key, f.state, f.records_quarantined FROM biobridge.landed_files AS f
WHERE {_WINDOW}
  AND (f.state = 'quarantined' OR (f.state = 'loaded' AND f.records_quarantined > 0))
  AND NOT EXISTS (SELECT 1 FROM biobridge.quarantine AS q
                  WHERE q.object_key = f.object_key AND q.replayed_at IS NULL)
ORDER BY f.object_key
"""  # noqa: S608 - fixed text

# One scan of the window's rows for (d) and (g); grouped, so the result stays small.
_ROW_LINEAGE = """
SELECT
    CASE WHEN f.object_key IS NULL THEN 'orphan_row'
         WHEN f.state IN ('quarantined', 'deferred') THEN 'row_of_unloaded_file'
         WHEN e.delivery_seq IS DISTINCT FROM f.delivery_seq THEN 'delivery_mismatch' END,
    e.load_id IS NULL OR l.load_id IS NULL,
    e.source_key, e.load_id, f.state, count(*), min(e.id)
FROM public.biometric_events AS e
LEFT JOIN biobridge.landed_files AS f ON f.object_key = e.source_key
LEFT JOIN biobridge.loads AS l ON l.load_id = e.load_id
WHERE e.source_key IS NOT NULL
  AND ((e.received_at >= coalesce($2::timestamptz, '-infinity') AND e.received_at < $3)
       OR ($4 AND e.received_at IS NULL))
  AND ($5 OR split_part(e.source_key, '/', 2) = ANY($1::text[]))
  AND (f.object_key IS NULL OR f.state IN ('quarantined', 'deferred')
       OR e.delivery_seq IS DISTINCT FROM f.delivery_seq
       OR e.load_id IS NULL OR l.load_id IS NULL)
GROUP BY 1, 2, 3, 4, 5
ORDER BY 3, 4
"""

_UNIQUE_INDEX = """
SELECT i.indisunique AND i.indisvalid AND i.indpred IS NULL,
       array_to_string(array_agg(a.attname::text ORDER BY k.n), ',')
FROM pg_index AS i
CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, n)
JOIN pg_attribute AS a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
WHERE i.indexrelid = to_regclass('public.biometric_events_measurement_key')
GROUP BY i.indisunique, i.indisvalid, i.indpred IS NULL
"""

_DUPLICATES = """
SELECT count(*) FROM (SELECT 1 FROM public.biometric_events
    GROUP BY user_id, device_type, metric_type, "timestamp" HAVING count(*) > 1) AS d
"""


@dataclass(frozen=True)
class Discrepancy:
    """One thing that does not add up: what kind, which object or row, and what is off."""

    kind: str
    key: str
    detail: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.key}: {self.detail}"


@dataclass
class VerifyReport:
    """Counts per category and every discrepancy found; `ok` when there is none."""

    received_from: datetime | None
    received_until: datetime
    vendors: tuple[str, ...]
    objects_listed: int = 0
    ledger_states: dict[str, int] = field(default_factory=dict)
    undiscovered_recent: int = 0
    undiscovered_oldest_age_s: float | None = None
    missing_objects: int = 0
    files_checked: int = 0
    rows_loaded_ledger: int = 0
    rows_reflattened: int = 0
    keys_present: int = 0
    keys_superseded: int = 0
    keys_lost: int = 0
    rows_without_lineage: int = 0
    rows_without_load: int = 0
    legacy_rows: int | None = None
    duplicate_keys: int = 0
    notification_states: dict[str, int] = field(default_factory=dict)
    fetched_documents: int = 0
    fetched_documents_loaded: int = 0
    # Acknowledged by the receiver (in its log, `landing.commit_log`) but not objects yet: a
    # local store's materializer publishes them; stuck longer than the settle window is a
    # discrepancy (`receiver_log_behind`).
    receiver_log_pending: int = 0
    receiver_log_oldest_age_s: float | None = None
    discrepancies: list[Discrepancy] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.discrepancies

    def counts(self) -> dict[str, Any]:
        """Everything but the discrepancy list, JSON-ready."""
        out = asdict(self)
        del out["discrepancies"]
        out["received_from"] = self.received_from.isoformat() if self.received_from else None
        out["received_until"] = self.received_until.isoformat()
        out["vendors"] = list(self.vendors)
        out["discrepancies_by_kind"] = self.by_kind()
        return out

    def by_kind(self) -> dict[str, int]:
        kinds: dict[str, int] = {}
        for d in self.discrepancies:
            kinds[d.kind] = kinds.get(d.kind, 0) + 1
        return kinds

    def add(self, kind: str, key: str, detail: str) -> None:
        self.discrepancies.append(Discrepancy(kind, key, detail))


def verify(
    conn: Connection,
    store: ObjectStore,
    *,
    received_from: datetime | None = None,
    received_until: datetime | None = None,
    vendors: Sequence[str] = VENDORS,
    settle: timedelta = SETTLE,
    grace: timedelta = DEFAULT_GRACE,
    now: datetime | None = None,
    file_batch: int = FILE_BATCH,
) -> VerifyReport:
    """Check that the window's landed objects, ledger rows and loaded rows account for each other.

    The window is `[received_from, received_until)` by receipt time; `received_until` defaults to
    now. Objects not yet in the ledger are a discrepancy only when older than `settle + grace`
    (`settle`: discovery's window, `tasks.discover.settle_window`). Rows without a source (the
    old system's) are counted as `legacy_rows`, only when the window is unbounded. Needs SELECT
    on the tables and TEMP.
    """
    now = now or datetime.now(UTC)
    until = received_until or now
    unbounded = received_from is None and received_until is None
    report = VerifyReport(received_from, until, tuple(vendors))
    vendor_array = "{" + ",".join(vendors) + "}"
    window = (vendor_array, received_from, until)
    conn.rollback()
    try:
        with conn.cursor() as cur:
            # The snapshot is taken before listing: a ledger row we see has a listed object.
            cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            cur.execute(_LEDGER_STATES, window)
            report.ledger_states = {state: int(n) for state, n in cur.fetchall()}
        _stage_listing(conn, store, report, received_from=received_from, until=until)
        _check_undiscovered(conn, report, now=now, late=settle + grace)
        _check_not_in_store(conn, report, window)
        _check_loaded_rows(conn, store, report, window, now, file_batch)
        _check_row_lineage(conn, report, window, unbounded=unbounded, all_vendors=_all(vendors))
        _check_duplicates(conn, report)
        _check_quarantine(conn, report, window)
        _check_queue(conn, report, window)
        _check_notifications(conn, report, window, late=now - settle - grace)
        _check_receiver_log(store, report, now=now, late=settle + grace)
    finally:
        conn.rollback()
    return report


def _check_receiver_log(
    store: ObjectStore, report: VerifyReport, *, now: datetime, late: timedelta
) -> None:
    """Count what the receiver acknowledged that is not an object yet (a local store's log)."""
    if not isinstance(store, LocalStore):
        return
    pending = backlog(store)
    report.receiver_log_pending = pending.records
    report.receiver_log_oldest_age_s = pending.oldest_age_s(now)
    age = report.receiver_log_oldest_age_s
    if age is not None and age > late.total_seconds():
        report.add(
            "receiver_log_behind",
            str(store.root / LOG_FOLDER),
            f"{pending.records} acknowledged bodies are still only in the receiver's log, the "
            f"oldest received {age / 60:.0f} min ago: is the receiver running? (it publishes "
            "them when it starts)",
        )


def _all(vendors: Sequence[str]) -> bool:
    return set(VENDORS) <= set(vendors)


def _listing(
    store: ObjectStore, vendor: str, *, received_from: datetime | None, until: datetime
) -> Iterator[tuple[str, datetime]]:
    """Keys of the window with when the store wrote them (its clock, not the receiver's)."""
    if received_from is None:
        yield from store.list_written(f"{RAW_PREFIX}{vendor}/")
        return
    for prefix in hour_prefixes(vendor, received_from, until):
        yield from store.list_written(prefix)


def _stage_listing(
    conn: Connection,
    store: ObjectStore,
    report: VerifyReport,
    *,
    received_from: datetime | None,
    until: datetime,
) -> None:
    """List the window's objects into `pg_temp.bb_verify_objects`; odd keys are discrepancies."""
    start = received_from or datetime.min.replace(tzinfo=UTC)
    mode: Literal["replace", "append"] = "replace"
    with conn.cursor() as cur:
        for vendor in report.vendors:
            keys = _listing(store, vendor, received_from=received_from, until=until)
            while chunk := list(islice(keys, LIST_CHUNK)):
                names: list[str] = []
                stamps: list[datetime] = []
                landed: list[datetime] = []
                for key, written_at in chunk:
                    try:
                        parts = parse_key(key)
                    except ValueError:
                        report.add(
                            "bad_key",
                            key,
                            "an object under raw/ whose key is not a landed key: discovery "
                            "cannot record it; move it out of raw/",
                        )
                        continue
                    if start <= parts.received_at < until:
                        names.append(key)
                        stamps.append(parts.received_at)
                        landed.append(written_at)
                table = pa.table(
                    {
                        "object_key": pa.array(names, pa.string()),
                        "received_at": pa.array(stamps, pa.timestamp("us", tz="UTC")),
                        "landed_at": pa.array(landed, pa.timestamp("us", tz="UTC")),
                    }
                )
                cur.adbc_ingest("bb_verify_objects", table, mode=mode, temporary=True)
                mode = "append"
                report.objects_listed += len(names)
        if mode == "replace":  # nothing listed: the checks still need the table
            cur.execute(
                "CREATE TEMP TABLE bb_verify_objects (object_key text, received_at timestamptz, "
                "landed_at timestamptz)"
            )
        cur.execute("CREATE UNIQUE INDEX ON pg_temp.bb_verify_objects (object_key)")
        cur.execute("ANALYZE pg_temp.bb_verify_objects")


def _check_undiscovered(
    conn: Connection, report: VerifyReport, *, now: datetime, late: timedelta
) -> None:
    with conn.cursor() as cur:
        cur.execute(_UNDISCOVERED)
        rows = cur.fetchall()
    for key, received_at, landed_at in rows:
        # Aged by the store's clock: a receiver's clock may be behind (or ahead) by any amount.
        age = now - landed_at
        if report.undiscovered_oldest_age_s is None:
            report.undiscovered_oldest_age_s = age.total_seconds()
        if age > late:
            skew = landed_at - received_at
            stamped = f"; its receiver stamped it {_age(skew)} earlier" if skew > late else ""
            report.add(
                "undiscovered",
                key,
                f"landed {_age(age)} ago by the store's clock and not in the ledger (allowed: "
                f"{_age(late)}){stamped}: is the scheduled ingest running? "
                "`biobridge ingest --mode backfill` records it",
            )
        else:
            report.undiscovered_recent += 1


def _check_not_in_store(conn: Connection, report: VerifyReport, window: tuple[Any, ...]) -> None:
    with conn.cursor() as cur:
        cur.execute(_NOT_IN_STORE, window)
        rows = cur.fetchall()
    for key, state in rows:
        report.missing_objects += 1
        report.add(
            "missing_object",
            key,
            f"in the ledger ({state}) but not in the store: the raw body is lost; restore it "
            "from a backup of the landing store",
        )


def _check_loaded_rows(
    conn: Connection,
    store: ObjectStore,
    report: VerifyReport,
    window: tuple[Any, ...],
    now: datetime,
    file_batch: int,
) -> None:
    tally = RowTally()
    last = ""
    while True:
        with conn.cursor() as cur:
            cur.execute(_LOADED_PAGE, (*window, last, file_batch))
            page = [(k, None if n is None else int(n)) for k, n in cur.fetchall()]
        if not page:
            break
        check_loaded_files(conn, store, page, now=now, tally=tally)
        last = page[-1][0]
    for name in (
        "files_checked",
        "rows_loaded_ledger",
        "rows_reflattened",
        "keys_present",
        "keys_superseded",
        "keys_lost",
    ):
        setattr(report, name, getattr(tally, name))
    for kind, key, detail in tally.problems:
        report.add(kind, key, detail)


def _check_row_lineage(
    conn: Connection,
    report: VerifyReport,
    window: tuple[Any, ...],
    *,
    unbounded: bool,
    all_vendors: bool,
) -> None:
    with conn.cursor() as cur:
        cur.execute(_ROW_LINEAGE, (*window, unbounded, all_vendors))
        rows = cur.fetchall()
        if unbounded:
            cur.execute("SELECT count(*) FROM public.biometric_events WHERE source_key IS NULL")
            report.legacy_rows = int(one_row(cur)[0])
    for lineage, no_load, key, load_id, state, count, row_id in rows:
        example = f"{count} row(s), e.g. id={row_id}"
        if lineage == "orphan_row":
            report.rows_without_lineage += count
            report.add(
                "orphan_row",
                key,
                f"{example}: source_key names no object in the ledger; the row did not come "
                "from a landed file (or its ledger row was removed)",
            )
        elif lineage == "row_of_unloaded_file":
            report.rows_without_lineage += count
            report.add(
                "row_of_unloaded_file",
                key,
                f"{example}: the ledger says this file is {state}, so no row should name it",
            )
        elif lineage == "delivery_mismatch":
            report.rows_without_lineage += count
            report.add(
                "delivery_mismatch",
                key,
                f"{example}: its delivery_seq is not its file's (biobridge.landed_files), so "
                "lineage, replays and deletions, which find a file's rows by that number, miss "
                "it; written by something other than a load: set it from the ledger",
            )
        if no_load:
            report.rows_without_load += count
            report.add(
                "no_load_record",
                key,
                f"{example}: load_id {load_id} is not a load record in biobridge.loads",
            )


def _check_duplicates(conn: Connection, report: VerifyReport) -> None:
    """A valid unique index on the key proves there are none; without one, count them."""
    with conn.cursor() as cur:
        cur.execute(_UNIQUE_INDEX)
        row = cur.fetchone()
        if row is not None and row[0] and row[1] == "user_id,device_type,metric_type,timestamp":
            return
        cur.execute(_DUPLICATES)
        report.duplicate_keys = int(one_row(cur)[0])
    report.add(
        "no_unique_index",
        "public.biometric_events",
        "index biometric_events_measurement_key is missing, invalid or on other columns: "
        f"{report.duplicate_keys} duplicated measurement key(s) found; migrate again",
    )


def _check_quarantine(conn: Connection, report: VerifyReport, window: tuple[Any, ...]) -> None:
    with conn.cursor() as cur:
        cur.execute(_NO_OPEN_QUARANTINE, window)
        rows = cur.fetchall()
    for key, state, records in rows:
        what = "quarantined" if state == "quarantined" else f"loaded with {records} bad record(s)"
        report.add(
            "quarantine_missing",
            key,
            f"{what} but no open entry in biobridge.quarantine says why; replay it to record "
            "the reason: `biobridge ingest --mode replay`",
        )


# A pending file outside the queue would never be claimed: pending in name only (migration 0014).
_UNQUEUED = f"""
SELECT f.object_key, f.state, p.object_key IS NOT NULL FROM biobridge.landed_files AS f
LEFT JOIN biobridge.pending_files AS p USING (object_key)
WHERE {_WINDOW} AND (f.state = 'pending') IS DISTINCT FROM (p.object_key IS NOT NULL)
ORDER BY f.object_key
"""  # noqa: S608 - fixed text


def _check_queue(conn: Connection, report: VerifyReport, window: tuple[Any, ...]) -> None:
    with conn.cursor() as cur:
        cur.execute(_UNQUEUED, window)
        rows = cur.fetchall()
    for key, state, queued in rows:
        report.add(
            "queue_mismatch",
            key,
            f"{state} in the ledger but queued in biobridge.pending_files: the next run loads "
            "it again (a replay, counted as such)"
            if queued
            else "pending in the ledger but not in biobridge.pending_files: no run will claim "
            "it; mark it quarantined and replay it (`biobridge ingest --mode replay`)",
        )


_NOTIFICATION_STATES = f"""
SELECT coalesce(n.state, 'unregistered'), count(*) FROM biobridge.landed_files AS f
LEFT JOIN biobridge.notifications AS n USING (object_key)
WHERE {_WINDOW} AND f.state = 'deferred' GROUP BY 1
"""  # noqa: S608 - fixed text

_UNREGISTERED = f"""
SELECT f.object_key, f.loaded_at FROM biobridge.landed_files AS f
WHERE {_WINDOW} AND f.state = 'deferred' AND f.loaded_at < $4
  AND NOT EXISTS (SELECT 1 FROM biobridge.notifications AS n WHERE n.object_key = f.object_key)
ORDER BY f.object_key
"""  # noqa: S608 - fixed text

_DOCUMENTS = f"""
SELECT d.object_key, d.notification_key, d.fetched_at, l.state FROM biobridge.fetched_documents AS d
JOIN biobridge.landed_files AS f ON f.object_key = d.notification_key
LEFT JOIN biobridge.landed_files AS l ON l.object_key = d.object_key
WHERE {_WINDOW}
ORDER BY d.object_key
"""  # noqa: S608 - fixed text


def _check_notifications(
    conn: Connection, report: VerifyReport, window: tuple[Any, ...], *, late: datetime
) -> None:
    with conn.cursor() as cur:
        cur.execute(_NOTIFICATION_STATES, window)
        report.notification_states = {state: int(n) for state, n in cur.fetchall()}
        cur.execute(_UNREGISTERED, (*window, late))
        unregistered = cur.fetchall()
        cur.execute(_DOCUMENTS, window)
        documents = cur.fetchall()
    for key, deferred_at in unregistered:
        report.add(
            "notification_not_fetched",
            key,
            f"a pointer notification deferred at {deferred_at} that no fetch stage picked up; "
            "run `biobridge ingest` (the fetch stage runs first in every run)",
        )
    for doc_key, notification_key, fetched_at, state in documents:
        report.fetched_documents += 1
        if state == "loaded":
            report.fetched_documents_loaded += 1
        elif state is None and fetched_at < late:
            report.add(
                "fetched_document_not_in_ledger",
                doc_key,
                f"fetched for {notification_key} at {fetched_at} but never discovered; "
                "run `biobridge ingest --mode backfill` for its window",
            )


def _age(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h"
