"""Postgres access for the pipeline: which database, how to connect, and which errors to retry."""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol, overload
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import adbc_driver_manager
import adbc_driver_postgresql  # type: ignore[import-untyped]
from adbc_driver_manager.dbapi import Connection as Connection  # the one Connection type
from adbc_driver_manager.dbapi import Cursor, _SharedDatabase
from pydantic import SecretStr

from warehouse.embedded_pg import Listen, start_embedded_postgres
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

Dsn = str | SecretStr
"""A connection URL. The configured one stays a SecretStr until `connect` opens it."""


class DatabaseSettings(Protocol):
    """What `resolve_database_url` reads (the pipeline settings have both)."""

    @property
    def database_url(self) -> SecretStr | None: ...

    @property
    def data_dir(self) -> Path: ...

    @property
    def embedded_db_host(self) -> str: ...

    @property
    def embedded_db_port(self) -> int: ...


def resolve_database_url(settings: DatabaseSettings) -> SecretStr:
    """The configured `database_url`, else the URI of the embedded server under `data_dir`.

    Still wrapped: `connect` unwraps it; a message shows it through `display_url`.
    """
    if settings.database_url is not None:
        return settings.database_url
    listen = Listen(host=settings.embedded_db_host, port=settings.embedded_db_port)
    return SecretStr(start_embedded_postgres(settings.data_dir, listen))


def connect(url: Dsn, *, autocommit: bool = False) -> Connection:
    """An ADBC DB-API connection; failures raise Transient/PermanentDatabaseError, password-free.

    Autocommit is off by default, as in ADBC: call `commit()`. Close cursors before the connection.
    A URL libpq would misread (an unencoded `@` or space in the user or password) is refused
    before libpq sees it: its error would quote a piece of the password.
    """
    raw = _reveal(url)
    if problem := url_problem(raw):
        raise PermanentDatabaseError(f"the database URL {display_url(raw)} is malformed: {problem}")
    try:
        shared = _database(raw)
        # The dbapi connection takes its own reference to `shared` and drops it on close.
        with _SESSIONS_LOCK:
            session = adbc_driver_manager.AdbcConnection(shared._db)
        return _Session(shared, session, autocommit=autocommit)
    except adbc_driver_manager.Error as exc:
        error = TransientDatabaseError if is_transient(exc) else PermanentDatabaseError
        reason = _redact(str(exc), raw)  # libpq names host and port; never let it quote a secret
        message = f"could not connect to {display_url(raw)}: {reason}"
        raise error(message, sqlstate=exc.sqlstate) from None


_DATABASES: dict[tuple[int, str], _SharedDatabase] = {}
_DATABASES_LOCK = threading.Lock()

_SESSIONS_LOCK = threading.RLock()  # re-entrant: a collected connection may close inside it
"""Held while a connection of a shared database opens or closes. The driver (1.13) counts a
database's open connections in a plain `int32_t`, changed without the GIL: two threads opening
and closing at once can lose a count, and a later close then fails with "[libpq] Open connection
count underflowed" (seen once: a 100k-file ingest that had loaded everything exited 1)."""


class _Session(Connection):
    """A connection of a shared database: closes under `_SESSIONS_LOCK`."""

    def close(self) -> None:
        with _SESSIONS_LOCK:
            super().close()


def _database(raw: str) -> _SharedDatabase:
    """The driver's database object for `raw`, made once per process and URL.

    Making one (what `adbc_driver_postgresql.dbapi.connect` does on every call) opens a
    connection and reads the server's whole type catalogue: ~33 ms and ~23 ms of CPU, measured,
    against ~2 ms for a connection from a kept one. A batch opened two or three connections, so
    that was most of the flow process's per-batch CPU. A connection is still a new server
    session each time: nothing but the type catalogue is shared. One we hold is never closed
    (the dbapi connections count references to it); a failed one is not kept.
    """
    key = (os.getpid(), raw)  # a forked child makes its own
    with _DATABASES_LOCK:
        shared = _DATABASES.get(key)
        if shared is None:
            shared = _SharedDatabase(adbc_driver_postgresql.connect(raw))
            _DATABASES[key] = shared
        return shared


_IDLE: dict[tuple[int, str, bool], list[Connection]] = {}
_KEEPERS = 0
_IDLE_LOCK = threading.Lock()
MAX_IDLE = 4
"""Idle connections kept per URL while a run keeps sessions (a run's worker slots and their
batch records need about one each)."""


@contextmanager
def keeping_sessions() -> Iterator[None]:
    """Within the block (an ingest run), `session` hands finished connections to the next
    batch instead of closing them: a server session costs ~3 ms of the process and more of the
    server (a backend forked, its catalogue caches filled again, torn down), twice per batch.
    At the end of the outermost block every kept connection is closed, so nothing outlives the
    run (a test or a benchmark can drop its database right after)."""
    global _KEEPERS
    with _IDLE_LOCK:
        _KEEPERS += 1
    try:
        yield
    finally:
        closing: list[Connection] = []
        with _IDLE_LOCK:
            _KEEPERS -= 1
            if _KEEPERS == 0:
                closing = [c for idle in _IDLE.values() for c in idle]
                _IDLE.clear()
        for conn in closing:
            _close_quietly(conn)


@contextmanager
def session(url: Dsn, *, autocommit: bool = False) -> Iterator[Connection]:
    """A connection for one unit of work, reused from an earlier one within `keeping_sessions`.

    The caller commits or rolls back as with `connect`; what it leaves open is rolled back when
    the block ends. A block that raises closes its connection and every idle one of the URL (a
    lost connection usually means a restarted server: the idle ones are as dead); outside
    `keeping_sessions` this is `connect` and close.
    """
    raw = _reveal(url)
    key = (os.getpid(), raw, autocommit)
    with _IDLE_LOCK:
        idle = _IDLE.get(key)
        conn = idle.pop() if idle else None
    if conn is None:
        conn = connect(url, autocommit=autocommit)
    try:
        yield conn
    except BaseException:
        with _IDLE_LOCK:
            dead = _IDLE.pop(key, [])
        for other in [conn, *dead]:
            _close_quietly(other)
        raise
    if not autocommit:
        try:
            conn.rollback()  # nothing is left open for the next user (a no-op after a commit)
        except adbc_driver_manager.Error:
            _close_quietly(conn)  # the work is done; only this connection is not kept
            return
    with _IDLE_LOCK:
        idle = _IDLE.setdefault(key, [])
        if _KEEPERS and len(idle) < MAX_IDLE:
            idle.append(conn)
            return
    _close_quietly(conn)


def _close_quietly(conn: Connection) -> None:
    try:
        conn.close()
    except adbc_driver_manager.Error:
        pass  # a dead connection: closing it frees what the driver holds, nothing to report


def url_problem(raw: str) -> str | None:
    """Why libpq would misread the URI `raw` (None when it is fine, or not a URI)."""
    split = _split_uri(raw)
    userinfo = None if split is None else split[1]
    if userinfo is None:
        return None
    user, _, password = userinfo.partition(":")
    if "@" in userinfo:
        return "the user or password contains '@': percent-encode it as %40"
    for name, value in (("user", user), ("password", password)):
        if any(c.isspace() for c in value):
            return f"the {name} contains a space: percent-encode it as %20"
    return None


def _split_uri(raw: str) -> tuple[str, str | None, str] | None:
    """(scheme, userinfo or None, rest after the userinfo) of a URI; None when `raw` is not one.

    The userinfo ends at the *last* `@` before the path, so an unencoded `@` in the password
    stays in the userinfo (SQLAlchemy and libpq split at the first one).
    """
    scheme, sep, rest = raw.partition("://")
    if not sep or not scheme.replace("+", "").isalpha():
        return None
    authority_end = len(rest)
    at = rest.rfind("@")
    for stop in "/?":
        index = rest.find(stop, at + 1)
        if index != -1:
            authority_end = min(authority_end, index)
    authority = rest[:authority_end]
    if "@" not in authority:
        return scheme, None, rest
    userinfo, _, host = authority.rpartition("@")
    return scheme, userinfo, host + rest[authority_end:]


def _redact(message: str, raw: str) -> str:
    """`message` with every piece of the secret parts of `raw` masked."""
    secrets: list[str] = []
    split = _split_uri(raw)
    if split is None:  # key=value string: any value may be quoted back; mask all of them
        secrets += [part.partition("=")[2] or part for part in raw.split()]
    elif split[1] is not None:
        password = split[1].partition(":")[2]
        secrets += [password, *password.replace("@", " ").split()]
    query_password = re.search(r"[?&]password=([^&]*)", raw)
    if query_password:
        secrets.append(query_password.group(1))
    for secret in sorted((s for s in secrets if len(s) >= 3), key=len, reverse=True):
        message = message.replace(secret, "***")
    return message


def one_row(cur: Cursor) -> tuple[Any, ...]:
    """The row of a statement that always returns exactly one (an aggregate, a RETURNING)."""
    row = cur.fetchone()
    if row is None:
        raise RuntimeError("expected one row, the statement returned none")
    return row


def text_array(values: Sequence[str]) -> str:
    """A text[] literal for a `$n::text[]` parameter (every element quoted: object keys may hold
    characters an array literal treats specially)."""
    quoted = ('"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values)
    return "{" + ",".join(quoted) + "}"


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


def display_url(url: Dsn) -> str:
    """`url` fit for a message or a log line: the password masked (also a `password` query
    parameter, also when it holds an unencoded `@`); a string that is not a URI is not shown."""
    raw = _reveal(url)
    split = _split_uri(raw)
    if split is None:
        return "(a key=value connection string, not shown)" if "=" in raw else "(not a URL)"
    scheme, userinfo, rest = split
    rest = re.sub(r"([?&]password=)[^&]*", r"\1***", rest)
    if userinfo is None:
        return f"{scheme}://{rest}"
    user, _, password = userinfo.partition(":")
    return f"{scheme}://{user}{':***' if password else ''}@{rest}"


def _password(raw: str) -> str | None:
    split = _split_uri(raw)
    if split is None or split[1] is None:
        return None
    return split[1].partition(":")[2] or None


def url_with_database(url: str, database: str) -> str:
    """The URI `url` pointing at another database on the same server."""
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres"):
        raise ValueError(
            f"expected a postgresql:// URI, found {display_url(url)!r}: "
            "key=value connection strings are not supported here"
        )
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "dbname"]
    return urlunsplit(parts._replace(path=f"/{database}", query=urlencode(query, safe="/")))


@overload
def with_connect_timeout(url: str, seconds: int) -> str: ...
@overload
def with_connect_timeout(url: SecretStr, seconds: int) -> SecretStr: ...
def with_connect_timeout(url: Dsn, seconds: int) -> Dsn:
    """The URI `url` with libpq's `connect_timeout` set, unless it already has one (a wrapped
    URL stays wrapped)."""
    if isinstance(url, SecretStr):
        return SecretStr(_with_connect_timeout(url.get_secret_value(), seconds))
    return _with_connect_timeout(url, seconds)


def _reveal(url: Dsn) -> str:
    return url.get_secret_value() if isinstance(url, SecretStr) else url


def _with_connect_timeout(url: str, seconds: int) -> str:
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    if parts.scheme not in ("postgresql", "postgres") or any(
        key == "connect_timeout" for key, _ in query
    ):
        return url
    query.append(("connect_timeout", str(seconds)))
    return urlunsplit(parts._replace(query=urlencode(query, safe="/")))
