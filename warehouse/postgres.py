"""Postgres access for the pipeline: which database, how to connect, and which errors to retry."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Protocol
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

import adbc_driver_manager
from adbc_driver_manager.dbapi import Connection as Connection  # re-exported for callers
from adbc_driver_postgresql import dbapi  # type: ignore[import-untyped]
from pydantic import SecretStr

from warehouse.embedded_pg import start_embedded_postgres
from warehouse.errors import PermanentDatabaseError, TransientDatabaseError

# Retrying helps: serialization failure, deadlock, connection exceptions (08*), admin or crash
# shutdown, server starting up, too many connections.
TRANSIENT_SQLSTATES = frozenset({"40001", "40P01", "57P01", "57P02", "57P03", "53300"})
TRANSIENT_SQLSTATE_CLASSES = ("08",)
# When an error has no sqlstate (libpq connection failures), classify by its message. Permanent
# markers win: "Failed to connect ... database "x" does not exist" is permanent.
PERMANENT_MARKERS = ("does not exist", "password", "authentication")
TRANSIENT_MARKERS = (
    "server closed the connection",
    "no connection to the server",
    "terminating connection",
    "failed to connect",
    "could not connect",
    "connection refused",
    "connection timed out",
    "timeout expired",
)

_URI_PASSWORD = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.-]*://[^:@/?#\s]*):(?P<password>\S+)@")
_KEYWORD_PASSWORD = re.compile(r"(?P<head>password\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s&]+)", re.I)


class DatabaseSettings(Protocol):
    """What `resolve_database_url` reads (the pipeline settings have both)."""

    @property
    def database_url(self) -> SecretStr | None: ...

    @property
    def data_dir(self) -> Path: ...


def resolve_database_url(settings: DatabaseSettings) -> str:
    """The configured `database_url`, else the URI of the embedded server under `data_dir`.

    The result may hold a password: pass it to `connect`, never to a log line (see `redact_url`).
    """
    if settings.database_url is not None:
        return settings.database_url.get_secret_value()
    return start_embedded_postgres(settings.data_dir)


def connect(url: str, *, autocommit: bool = False) -> Connection:
    """An ADBC DB-API connection; failures raise Transient/PermanentDatabaseError, password-free.

    Autocommit is off by default, as in ADBC: call `commit()`. Close cursors before the connection.
    """
    try:
        conn: Connection = dbapi.connect(url, autocommit=autocommit)
        return conn
    except adbc_driver_manager.Error as exc:
        error = TransientDatabaseError if is_transient(exc) else PermanentDatabaseError
        message = f"could not connect to {redact_url(url)}: {redact_text(str(exc), url)}"
        raise error(message, sqlstate=exc.sqlstate) from None


def is_transient(exc: BaseException) -> bool:
    """True when retrying (after a backoff, on a new connection) may succeed.

    Classified by sqlstate, else by message. A unique violation (23505) is permanent here: only
    the loader knows when it comes from a concurrent writer.
    """
    if isinstance(exc, TransientDatabaseError):
        return True
    if isinstance(exc, PermanentDatabaseError):
        return False
    sqlstate = getattr(exc, "sqlstate", None)
    if isinstance(sqlstate, str) and sqlstate:
        return sqlstate in TRANSIENT_SQLSTATES or sqlstate.startswith(TRANSIENT_SQLSTATE_CLASSES)
    message = str(exc).lower()
    if any(marker in message for marker in PERMANENT_MARKERS):
        return False
    return any(marker in message for marker in TRANSIENT_MARKERS)


def redact_url(url: str) -> str:
    """`url` with any password replaced by `***` (URI user info, `password=` parameters)."""
    url = _URI_PASSWORD.sub(r"\g<head>:***@", url)
    return _KEYWORD_PASSWORD.sub(r"\g<head>***", url)


def redact_text(text: str, url: str) -> str:
    """`text` (an error message) without the password of `url`, in any form it may appear."""
    for password in _passwords(url):
        text = text.replace(password, "***")
    return redact_url(text)


def url_with_database(url: str, database: str) -> str:
    """The URI `url` pointing at another database on the same server."""
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres"):
        raise ValueError(
            f"expected a postgresql:// URI, found {redact_url(url)!r}: "
            "key=value connection strings are not supported here"
        )
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "dbname"]
    return urlunsplit(parts._replace(path=f"/{database}", query=urlencode(query, safe="/")))


def with_connect_timeout(url: str, seconds: int) -> str:
    """The URI `url` with libpq's `connect_timeout` set, unless it already has one."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    if parts.scheme not in ("postgresql", "postgres") or any(
        key == "connect_timeout" for key, _ in query
    ):
        return url
    query.append(("connect_timeout", str(seconds)))
    return urlunsplit(parts._replace(query=urlencode(query, safe="/")))


def _passwords(url: str) -> list[str]:
    found: list[str] = []
    try:
        parts = urlsplit(url)
        if parts.password:
            found.append(parts.password)
        found += [value for key, value in parse_qsl(parts.query) if key == "password"]
    except ValueError:
        pass  # not a URI: the keyword pattern of redact_url still applies
    found += [unquote(p) for p in found]
    return sorted({p for p in found if p}, key=len, reverse=True)
