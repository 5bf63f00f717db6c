"""Pipeline health for `biobridge health`: database, store, backlog and the last loads.

Never raises for an unhealthy component: each part reports `ok` and an `error`, and `problems`
lists what makes the whole unhealthy. Nothing here writes, except the store's probe object.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import adbc_driver_manager

from landing.commit_log import backlog
from landing.keys import VENDORS, hour_prefixes, parse_key
from landing.local_store import LocalStore
from landing.store import ObjectStore, StoreError
from ops.database_health import database_health
from warehouse.errors import DatabaseError
from warehouse.postgres import Connection, Dsn, connect, one_row, with_connect_timeout
from warehouse.quarantine import quarantine_counts

# How far back the store is listed for objects discovery has not recorded yet, at most.
LOOKBACK = timedelta(hours=24)


def pipeline_health(
    url: Dsn,
    store: ObjectStore | Callable[[], ObjectStore],
    *,
    max_pending_age: timedelta,
    vendors: Sequence[str] = VENDORS,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Check everything and return a JSON-ready report with `ok` and `problems`.

    `store` may be a factory, so that a store that cannot even be opened is reported too.
    """
    now = now or datetime.now(UTC)
    report: dict[str, Any] = {"checked_at": now.isoformat(), "problems": []}
    problems: list[str] = report["problems"]

    database = database_health(url)
    report["database"] = database
    if not database["ok"]:
        problems.append(f"database: {database['error']}")

    opened, store_report = _store_health(store)
    report["store"] = store_report
    if not store_report["ok"]:
        problems.append(f"store: {store_report['error']}")

    report["backlog"] = report["loads"] = report["quarantine"] = None
    report["not_checked"] = (
        f"landed objects older than {LOOKBACK.total_seconds() / 3600:.0f} h that discovery never "
        "recorded, and whether loaded rows match their files: `biobridge verify` checks both"
    )
    if database["reachable"]:
        try:
            with connect(with_connect_timeout(url, 5)) as conn:
                report["loads"] = _loads(conn)
                report["quarantine"] = quarantine_counts(conn)
                report["backlog"] = _backlog(
                    conn, opened if store_report["ok"] else None, vendors, now
                )
        except (DatabaseError, adbc_driver_manager.Error) as exc:
            problems.append(f"database: {exc}")  # connect() masks the password

    backlog, loads = report["backlog"], report["loads"]
    if backlog and backlog["oldest_age_s"] is not None:
        if backlog["oldest_age_s"] > max_pending_age.total_seconds():
            problems.append(
                f"backlog: the oldest unloaded file ({backlog['oldest_key']}) was received "
                f"{backlog['oldest_age_s'] / 60:.0f} min ago, more than the allowed "
                f"{max_pending_age.total_seconds() / 60:.0f} min "
                "(BIOBRIDGE_HEALTH_MAX_PENDING_AGE_S): is the scheduled ingest running?"
            )
    if loads and loads["last_finished_status"] == "failed":
        failed = loads["last_failed"]
        problems.append(f"loads: the last load ({failed['load_id']}) failed: {failed['error']}")
    report["ok"] = not problems
    return report


def _store_health(
    store: ObjectStore | Callable[[], ObjectStore],
) -> tuple[ObjectStore | None, dict[str, Any]]:
    report: dict[str, Any] = {"ok": False, "url": None, "error": None}
    try:
        opened = store() if callable(store) else store
        report["url"] = opened.url
        opened.probe()
    except (StoreError, OSError, ValueError) as exc:
        report["error"] = f"{type(exc).__name__}: {exc}"
        return None, report
    report["ok"] = True
    if isinstance(opened, LocalStore):
        # Acknowledged webhooks not yet objects (the receiver's materializer is behind).
        pending = backlog(opened)
        report["receiver_log"] = {
            "records": pending.records,
            "bytes": pending.bytes,
            "oldest_age_s": pending.oldest_age_s(),
            "segments": pending.segments,
        }
    return opened, report


def _loads(conn: Connection) -> dict[str, Any]:
    """The last completed and the last failed load, and how the latest finished one ended."""
    out: dict[str, Any] = {}
    with conn.cursor() as cur:
        for name, status in (("last_completed", "completed"), ("last_failed", "failed")):
            cur.execute(
                "SELECT load_id, finished_at, error FROM biobridge.loads WHERE status = $1 "
                "ORDER BY finished_at DESC NULLS LAST, load_id DESC LIMIT 1",
                (status,),
            )
            row = cur.fetchone()
            out[name] = (
                None
                if row is None
                else {"load_id": row[0], "finished_at": _iso(row[1]), "error": row[2]}
            )
        cur.execute(
            "SELECT status FROM biobridge.loads WHERE finished_at IS NOT NULL "
            "ORDER BY finished_at DESC, load_id DESC LIMIT 1"
        )
        row = cur.fetchone()
        out["last_finished_status"] = None if row is None else row[0]
        cur.execute("SELECT count(*) FROM biobridge.loads WHERE status = 'running'")
        out["running"] = int(one_row(cur)[0])
    conn.rollback()
    return out


def _backlog(
    conn: Connection, store: ObjectStore | None, vendors: Sequence[str], now: datetime
) -> dict[str, Any]:
    """Pending ledger rows, plus landed objects of the recent partitions not yet discovered
    (aged by the store's clock: when it wrote them, whatever their receiver stamped)."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT (SELECT count(*) FROM biobridge.pending_files), "
            "count(*) FILTER (WHERE state = 'deferred') FROM biobridge.landed_files"
        )
        pending, deferred = one_row(cur)
        cur.execute(
            "SELECT object_key, received_at FROM biobridge.pending_files "
            "ORDER BY received_at, object_key LIMIT 1"
        )
        oldest = cur.fetchone()
    conn.rollback()
    report: dict[str, Any] = {
        "pending": int(pending),
        "deferred": int(deferred),
        "undiscovered": None,
        "oldest_key": None if oldest is None else oldest[0],
        "oldest_received_at": None if oldest is None else _iso(oldest[1]),
        "oldest_age_s": None if oldest is None else (now - oldest[1]).total_seconds(),
    }
    if store is None:
        return report
    undiscovered = 0
    for vendor in vendors:
        for key, landed_at in _undiscovered(conn, store, vendor, now):
            undiscovered += 1
            age = (now - landed_at).total_seconds()
            if report["oldest_age_s"] is None or age > report["oldest_age_s"]:
                report.update(oldest_key=key, oldest_received_at=_iso(landed_at), oldest_age_s=age)
    report["undiscovered"] = undiscovered
    return report


def _undiscovered(
    conn: Connection, store: ObjectStore, vendor: str, now: datetime
) -> list[tuple[str, datetime]]:
    """Objects of `vendor`'s partitions of the last LOOKBACK not in the ledger, with when the
    store wrote them. Not from the discovery cursor: a receiver whose clock is behind writes
    behind it, and such an object is exactly what must show here."""
    start = now - LOOKBACK
    listed: list[tuple[str, datetime]] = []
    for prefix in hour_prefixes(vendor, start, now):
        for key, landed_at in store.list_written(prefix):
            try:
                parse_key(key)
            except ValueError:
                continue  # not a landed key: `biobridge verify` reports it
            listed.append((key, landed_at))
    if not listed:
        return []
    with conn.cursor() as cur:
        cur.execute(
            "SELECT object_key FROM biobridge.landed_files WHERE vendor = $1 AND received_at >= $2",
            (vendor, start.replace(minute=0, second=0, microsecond=0)),
        )
        known = {k for (k,) in cur.fetchall()}
    conn.rollback()
    return [(k, t) for k, t in listed if k not in known]


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()
