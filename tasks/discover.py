"""Discover stage: find landed objects the ledger has not seen, listing only recent partitions.

Each vendor has a cursor, `listed_through`: every object received before it is in the ledger.
A run lists the hour partitions from the cursor to now and then moves the cursor to
`now - settle`. The receiver never acknowledges a body whose write finished later than its
ack deadline (half the settle window), so an acknowledged object that lands late is
still inside the window the next run lists: nothing is missed, and re-listed keys are ignored.

That reasoning holds only while the receivers' clocks are right: a receiver 15 minutes behind
writes keys into partitions the cursor has passed. So scheduled runs also sweep (`sweep`): they
list each vendor's whole prefix in key order, a bounded number of keys per run, resuming where
the last run stopped; every object is recorded within one pass, whatever its key says.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from itertools import islice

from landing.keys import RAW_PREFIX, hour_prefixes
from landing.settings import Settings
from landing.store import ObjectStore
from warehouse.ledger import record_discovered
from warehouse.postgres import Connection, one_row

CHUNK = 20_000
FIRST_CHUNK = 2_000
"""A listing commits its first keys in a chunk this size, doubling up to `CHUNK`: the batches
claim from the first commit, so a large backlog starts loading after 2,000 keys, not 20,000
(~0.5 s sooner)."""
SWEEP_KEYS = 50_000
"""Keys a scheduled run sweeps per vendor by default (`BIOBRIDGE_DISCOVERY_SWEEP_KEYS`)."""
# Advisory lock class of a vendor's sweep: (SWEEP_LOCK_CLASS, hashtext(vendor)).
SWEEP_LOCK_CLASS = int.from_bytes(b"bbsw", "big") & 0x7FFF_FFFF


def settle_window(ack_deadline_s: float) -> timedelta:
    """How far behind now a cursor stays: twice the receiver's ack deadline.

    Discovery and `verify` both use it, so verify never calls an object undiscovered that
    discovery would still find.
    """
    return timedelta(seconds=2 * ack_deadline_s)


SETTLE = settle_window(Settings.model_fields["ack_deadline_s"].default)
"""The settle window of the default ack deadline (tests and tools without settings)."""


def listing_plan(
    vendor: str, *, start: datetime | None, end: datetime
) -> list[tuple[str, str | None]]:
    """(prefix, start_after) pairs that cover objects of `vendor` received in [start, end]."""
    if start is None:
        return [(f"{RAW_PREFIX}{vendor}/", None)]
    prefixes = hour_prefixes(vendor, start, end)
    first = prefixes[0]
    after = first + start.astimezone(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    return [(first, after)] + [(p, None) for p in prefixes[1:]]


def list_keys(store: ObjectStore, plan: Sequence[tuple[str, str | None]]) -> Iterator[str]:
    """Every key the plan covers, partition by partition, without holding them all at once."""
    for prefix, after in plan:
        yield from store.list_keys(prefix, start_after=after)


def get_cursor(conn: Connection, vendor: str) -> datetime | None:
    """How far `vendor`'s partitions are known to be listed (None: never)."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT listed_through FROM biobridge.discovery_cursor WHERE vendor = $1", (vendor,)
        )
        row = cur.fetchone()
    conn.commit()
    return None if row is None else row[0]


def advance_cursor(conn: Connection, vendor: str, through: datetime) -> None:
    """Move the cursor forward (never back: a slower concurrent run cannot undo a faster one)."""
    with conn.cursor() as cur:
        cur.execute(
            "INSERT INTO biobridge.discovery_cursor (vendor, listed_through) VALUES ($1, $2) "
            "ON CONFLICT (vendor) DO UPDATE SET listed_through = GREATEST("
            "biobridge.discovery_cursor.listed_through, EXCLUDED.listed_through), "
            "updated_at = now()",
            (vendor, through),
        )
    conn.commit()


def discover(
    conn: Connection,
    store: ObjectStore,
    *,
    vendors: Sequence[str],
    now: datetime | None = None,
    window: tuple[datetime | None, datetime | None] | None = None,
    settle: timedelta = SETTLE,
    sweep_keys: int = SWEEP_KEYS,
    stop: Callable[[], bool] = lambda: False,
) -> dict[str, int]:
    """Add unseen landed objects to the ledger; returns new keys per vendor.

    Without `window` it lists incrementally from each vendor's cursor, then sweeps up to
    `sweep_keys` keys of the vendor's prefix. With a window (a backfill) it lists that range in
    full, leaving the cursors alone; (None, None) lists everything.

    Each chunk of keys is committed as it is listed, so loaders can claim them at once. `stop`
    is asked between chunks: once it says so, the listing ends there, the vendor's cursor stays
    where it was (the next run lists the rest again) and no sweep starts.
    """
    now = now or datetime.now(UTC)
    found: dict[str, int] = {}
    for vendor in vendors:
        if stop():
            break
        if window is None:
            cursor = get_cursor(conn, vendor)
            plan = listing_plan(vendor, start=cursor, end=now)
        else:
            plan = listing_plan(vendor, start=window[0], end=window[1] or now)
        keys = list_keys(store, plan)
        new = 0
        size = min(FIRST_CHUNK, CHUNK)
        while chunk := list(islice(keys, size)):
            new += record_discovered(conn, chunk)
            if stop():
                found[vendor] = new
                return found
            size = min(2 * size, CHUNK)
        if window is None:
            advance_cursor(conn, vendor, now - settle)
            if cursor is None:
                # That listing was the vendor's whole prefix, in key order: a complete sweep
                # pass already (a first run over a large backlog need not list it again).
                _record_full_pass(conn, vendor, started=now)
            elif not stop():
                new += sweep(conn, store, vendor, keys=sweep_keys, now=now)
        found[vendor] = new
    return found


def sweep(conn: Connection, store: ObjectStore, vendor: str, *, keys: int, now: datetime) -> int:
    """List up to `keys` keys of `vendor`'s prefix after where the last sweep stopped and record
    the unseen ones; returns how many were new. Clock-proof: it never looks at key times.

    Reaching the end of the prefix completes a pass: `swept_through` becomes the time the pass
    started, and every object landed before it is in the ledger. One run sweeps a vendor at a
    time (a Postgres advisory lock; another run skips it), so passes never interleave.
    """
    with _sweep_lock(conn, vendor) as locked:
        if not locked:
            return 0
        after, started = _sweep_position(conn, vendor)
        started = started or now
        listed = islice(store.list_keys(f"{RAW_PREFIX}{vendor}/", start_after=after), keys)
        new = seen = 0
        while chunk := list(islice(listed, CHUNK)):
            new += record_discovered(conn, chunk)
            seen += len(chunk)
            after = chunk[-1]
        if seen < keys:  # the end of the prefix: the pass is complete
            _save_sweep(conn, vendor, after=None, started=None, swept_through=started)
        else:
            _save_sweep(conn, vendor, after=after, started=started, swept_through=None)
        return new


def _record_full_pass(conn: Connection, vendor: str, *, started: datetime) -> None:
    """Record a listing of `vendor`'s whole prefix that began at `started` as a complete pass
    (unless a sweep holds the vendor: it completes its own)."""
    with _sweep_lock(conn, vendor) as locked:
        if locked:
            _save_sweep(conn, vendor, after=None, started=None, swept_through=started)


@contextmanager
def _sweep_lock(conn: Connection, vendor: str) -> Iterator[bool]:
    """Whether this session took `vendor`'s sweep lock (held until the block ends)."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT pg_try_advisory_lock($1::int, hashtext($2::text))", (SWEEP_LOCK_CLASS, vendor)
        )
        (locked,) = one_row(cur)
    conn.commit()
    try:
        yield bool(locked)
    finally:
        if locked:
            with conn.cursor() as cur:
                cur.execute(
                    "SELECT pg_advisory_unlock($1::int, hashtext($2::text))",
                    (SWEEP_LOCK_CLASS, vendor),
                )
                cur.fetchall()
            conn.commit()


def _sweep_position(conn: Connection, vendor: str) -> tuple[str | None, datetime | None]:
    with conn.cursor() as cur:
        cur.execute(
            "SELECT sweep_after, sweep_started_at FROM biobridge.discovery_cursor "
            "WHERE vendor = $1",
            (vendor,),
        )
        row = cur.fetchone()
    conn.commit()
    return (None, None) if row is None else (row[0], row[1])


def _save_sweep(
    conn: Connection,
    vendor: str,
    *,
    after: str | None,
    started: datetime | None,
    swept_through: datetime | None,
) -> None:
    with conn.cursor() as cur:
        cur.execute(
            "UPDATE biobridge.discovery_cursor SET sweep_after = $2::text, "
            "sweep_started_at = $3::timestamptz, "
            "swept_through = coalesce($4::timestamptz, swept_through), updated_at = now() "
            "WHERE vendor = $1",
            (vendor, after, started, swept_through),
        )
    conn.commit()
