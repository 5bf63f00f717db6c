"""Database health for probes and the CLI: reachable, which server, which migrations are pending."""

from __future__ import annotations

from typing import Any

import adbc_driver_manager

from warehouse.errors import DatabaseError
from warehouse.migrate import pending_migrations
from warehouse.postgres import Dsn, connect, display_url, with_connect_timeout


def database_health(url: Dsn, *, timeout_s: int = 5) -> dict[str, Any]:
    """A real round trip to the database at `url`; never raises, never shows a password.

    Returns `ok`, `reachable`, `database` (the URL, redacted), `server_version`,
    `pending_migrations` (file names) and `error` (the reason, when not ok).
    """
    report: dict[str, Any] = {
        "ok": False,
        "reachable": False,
        "database": display_url(url),
        "server_version": None,
        "pending_migrations": None,
        "error": None,
    }
    try:
        with connect(with_connect_timeout(url, timeout_s)) as conn:
            with conn.cursor() as cur:
                cur.execute("SELECT current_setting('server_version')")
                row = cur.fetchone()
            report["reachable"] = True
            report["server_version"] = row[0] if row else None
            pending = pending_migrations(conn)
            conn.rollback()
    except (DatabaseError, adbc_driver_manager.Error) as exc:
        report["error"] = str(exc)  # connect() masks the password
        return report
    report["pending_migrations"] = pending
    if pending:
        report["error"] = f"{len(pending)} migration(s) pending: {', '.join(pending)}"
    else:
        report["ok"] = True
    return report
