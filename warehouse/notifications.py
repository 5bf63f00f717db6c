"""The notification ledger: where each pointer notification stands, and what was fetched for it.

A pointer notification is a landed file the load marked `deferred` (it has no rows of its own).
The fetch stage registers it here, claims it when due, and records its outcome; the documents it
lands are listed in `fetched_documents` (lineage: row.source_key -> fetched document ->
notification -> the delivery's landed file). States are documented in migration 0005.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from warehouse.file_rows import rows_of_file
from warehouse.postgres import Connection

RETRYABLE = ("pending", "rate_limited", "retry_later")
TERMINAL = ("fetched", "resolved_empty", "deleted", "failed")
STATES = (*RETRYABLE, "needs_reauth", *TERMINAL)


@dataclass(frozen=True)
class DueNotification:
    """A claimed notification: its landed file and how often it was tried."""

    key: str
    vendor: str
    attempts: int


def register_deferred(conn: Connection, *, vendors: Sequence[str]) -> int:
    """Add every deferred landed file not yet known here as a pending notification."""
    with conn.cursor() as cur:
        cur.execute(
            "INSERT INTO biobridge.notifications (object_key, vendor) "
            "SELECT object_key, vendor FROM biobridge.landed_files "
            "WHERE state = 'deferred' AND vendor = ANY($1::text[]) "
            "ORDER BY object_key ON CONFLICT (object_key) DO NOTHING",
            ("{" + ",".join(vendors) + "}",),
        )
        added = int(cur.rowcount)
    conn.commit()
    return added


def claim_due(
    conn: Connection, *, vendors: Sequence[str], limit: int, run_started: datetime
) -> list[DueNotification]:
    """Lock up to `limit` notifications that are due, oldest first, skipping others' claims.

    Due: pending or backing off past `next_attempt_at`; or waiting for re-authorisation when its
    user's connection became active again since. Notifications this run already handled
    (`updated_at >= run_started`) wait for the next run.
    """
    with conn.cursor() as cur:
        cur.execute(
            "SELECT n.object_key, n.vendor, n.attempts FROM biobridge.notifications AS n "
            "WHERE n.vendor = ANY($1::text[]) AND n.updated_at < $3 AND ("
            "(n.state IN ('pending', 'rate_limited', 'retry_later') "
            "AND n.next_attempt_at <= now()) "
            "OR (n.state = 'needs_reauth' AND EXISTS (SELECT 1 FROM "
            "biobridge.vendor_connections AS c WHERE c.vendor = n.vendor "
            "AND c.status = 'active' AND c.status_at > n.updated_at "
            "AND (n.vendor_user_id IS NULL OR c.vendor_user_id = n.vendor_user_id)))) "
            "ORDER BY n.first_seen_at, n.object_key LIMIT $2 FOR UPDATE OF n SKIP LOCKED",
            ("{" + ",".join(vendors) + "}", limit, run_started),
        )
        rows = cur.fetchall()
    return [DueNotification(key=k, vendor=v, attempts=int(a)) for k, v, a in rows]


def record_outcome(
    conn: Connection,
    key: str,
    *,
    state: str,
    reason: str | None,
    vendor_user_id: str | None,
    load_id: int,
    documents: int = 0,
    rows_deleted: int = 0,
    retry_in_s: float | None = None,
) -> None:
    """Move a claimed notification to `state`, with why (and when to try again)."""
    if state not in STATES:
        raise ValueError(f"state: expected one of {', '.join(STATES)}, found {state!r}")
    with conn.cursor() as cur:
        cur.execute(
            "UPDATE biobridge.notifications SET state = $2, reason = $3, vendor_user_id = "
            "coalesce($4, vendor_user_id), load_id = $5, documents = documents + $6, "
            "rows_deleted = rows_deleted + $7, attempts = attempts + 1, "
            "next_attempt_at = now() + make_interval(secs => $8), updated_at = clock_timestamp() "
            "WHERE object_key = $1",
            (
                key,
                state,
                reason,
                vendor_user_id,
                load_id,
                documents,
                rows_deleted,
                float(retry_in_s or 0.0),
            ),
        )


def record_document(
    conn: Connection,
    *,
    object_key: str,
    notification_key: str,
    vendor: str,
    resource: str,
    record_ref: str | None,
) -> None:
    """Note a landed document as fetched for a notification (its lineage link)."""
    with conn.cursor() as cur:
        cur.execute(
            "INSERT INTO biobridge.fetched_documents (object_key, notification_key, vendor, "
            "resource, record_ref) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
            (object_key, notification_key, vendor, resource, record_ref),
        )


_MARK_DELETED = f"""
UPDATE public.biometric_events AS e SET deleted_at = now(), deleted_by = $3
FROM biobridge.fetched_documents AS d
JOIN biobridge.landed_files AS f ON f.object_key = d.object_key
WHERE d.vendor = $1 AND d.record_ref = $2 AND e.deleted_at IS NULL AND {rows_of_file("e", "f")}
RETURNING 1
"""  # noqa: S608 - fixed text


def mark_rows_deleted(conn: Connection, *, vendor: str, record_ref: str, deleted_by: str) -> int:
    """Soft-delete the rows loaded from documents fetched for `record_ref`; how many."""
    with conn.cursor() as cur:
        cur.execute(_MARK_DELETED, (vendor, record_ref, deleted_by))
        return len(cur.fetchall())


def record_fetch_counts(conn: Connection, load_id: int, counts_json: str) -> None:
    """Store what the fetch stage did in this run on the load record."""
    with conn.cursor() as cur:
        cur.execute(
            "UPDATE biobridge.loads SET fetch_counts = $2::jsonb WHERE load_id = $1",
            (load_id, counts_json),
        )
    conn.commit()


def notification_states(conn: Connection) -> dict[str, int]:
    """How many notifications are in each state."""
    with conn.cursor() as cur:
        cur.execute("SELECT state, count(*) FROM biobridge.notifications GROUP BY state")
        return {state: int(n) for state, n in cur.fetchall()}
