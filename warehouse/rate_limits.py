"""Moving-window rate limits kept in Postgres, so every worker process shares them.

A bucket (e.g. `withings:app:app`) holds the times of its last `requests` calls, one row per
slot. A call may go when fewer than `requests` slots exist or the oldest left the window; it
then takes that slot. A transaction-scoped advisory lock per bucket serialises the check and
the take across processes and machines; the clock is the database's, one for all workers.
"""

from __future__ import annotations

from warehouse.postgres import Connection, one_row

# Advisory lock class of a rate-limit bucket: (RATE_LOCK_CLASS, hashtext(bucket)).
RATE_LOCK_CLASS = int.from_bytes(b"bbrl", "big") & 0x7FFF_FFFF


def take_slot(conn: Connection, bucket: str, *, requests: int, per_s: float) -> float:
    """Take a call slot of `bucket` and return 0, or return the seconds until one frees up."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT pg_advisory_xact_lock($1::int, hashtext($2::text))", (RATE_LOCK_CLASS, bucket)
        )
        cur.fetchall()
        cur.execute(
            "SELECT count(*), coalesce(extract(epoch FROM clock_timestamp() - min(at)), 0) "
            "FROM biobridge.rate_limit_slots WHERE bucket = $1",
            (bucket,),
        )
        used, oldest_age_s = one_row(cur)
        if int(used) < requests:
            cur.execute(
                "INSERT INTO biobridge.rate_limit_slots (bucket, slot, at) "
                "VALUES ($1, $2, clock_timestamp())",
                (bucket, int(used)),
            )
            wait = 0.0
        elif float(oldest_age_s) >= per_s:
            cur.execute(
                "UPDATE biobridge.rate_limit_slots SET at = clock_timestamp() "
                "WHERE bucket = $1 AND slot = (SELECT slot FROM biobridge.rate_limit_slots "
                "WHERE bucket = $1 ORDER BY at, slot LIMIT 1)",
                (bucket,),
            )
            wait = 0.0
        else:
            wait = per_s - float(oldest_age_s)
    conn.commit()
    return wait
