"""Apply `schemas/migrations/NNNN_name.sql` in order, each once, recorded with its checksum.

Rules for migration files: numbered `NNNN_lowercase_name.sql`; never edited once applied (add a
new file instead: a changed checksum is an error); no transaction control (`BEGIN`/`COMMIT`) and
nothing that refuses a transaction block (`CREATE INDEX CONCURRENTLY`), because each file runs
in one transaction together with its bookkeeping row.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import adbc_driver_manager
from adbc_driver_manager.dbapi import Cursor
from pydantic import SecretStr

import schemas
from warehouse.errors import MigrationError
from warehouse.postgres import Connection, Dsn, connect

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(schemas.__file__).parent / "migrations"
# Session advisory lock serialising migrators of one database: the bytes of "bbmigrat".
MIGRATION_LOCK_KEY = int.from_bytes(b"bbmigrat", "big") & 0x7FFF_FFFF_FFFF_FFFF
_FILE_NAME = re.compile(r"^(?P<version>\d{4})_(?P<name>[a-z0-9_]+)\.sql$")

_BOOTSTRAP = (
    "CREATE SCHEMA IF NOT EXISTS biobridge",
    """CREATE TABLE IF NOT EXISTS biobridge.schema_migrations (
        version    integer     PRIMARY KEY,
        name       text        NOT NULL,
        checksum   text        NOT NULL,
        applied_at timestamptz NOT NULL DEFAULT now()
    )""",
)


@dataclass(frozen=True)
class Migration:
    """One migration file: `0001_init.sql` is version 1, name `init`."""

    version: int
    name: str
    path: Path
    sql: str
    checksum: str

    @property
    def file_name(self) -> str:
        return self.path.name


def discover_migrations(folder: Path = MIGRATIONS_DIR) -> list[Migration]:
    """The migration files of `folder`, in version order, read and checksummed."""
    migrations: dict[int, Migration] = {}
    for path in sorted(folder.glob("*.sql")):
        match = _FILE_NAME.match(path.name)
        if match is None:
            raise MigrationError(f"{path}: expected a migration file named NNNN_lowercase_name.sql")
        version = int(match["version"])
        if version in migrations:
            raise MigrationError(
                f"{path}: version {version} is also {migrations[version].path.name}; "
                "give each file its own number"
            )
        # Normalised line endings: a checkout with CRLF is the same migration.
        sql = path.read_bytes().decode("utf-8").replace("\r\n", "\n")
        checksum = hashlib.sha256(sql.encode()).hexdigest()
        migrations[version] = Migration(version, match["name"], path, sql, checksum)
    return [migrations[v] for v in sorted(migrations)]


def apply_migrations(target: Dsn | Connection, *, folder: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply the pending migrations of `folder`; return the file names applied, in order.

    Takes a URL (connects and closes) or an open connection (its pending transaction is
    committed first). Concurrent callers on one database wait for each other on an advisory
    lock; each file is applied in its own transaction, so a failure leaves the earlier ones.
    When nothing is pending it only reads `biobridge.schema_migrations`: no lock, no DDL.

    Raises:
        MigrationError: a file failed (rolled back), or an applied file has changed since.
    """
    if isinstance(target, str | SecretStr):
        with closing(connect(target)) as conn:
            return _apply(conn, discover_migrations(folder))
    return _apply(target, discover_migrations(folder))


def pending_migrations(conn: Connection, *, folder: Path = MIGRATIONS_DIR) -> list[str]:
    """File names of the migrations of `folder` not yet applied to `conn`'s database.

    Read-only; leaves `conn`'s transaction open. Raises MigrationError if an applied file changed.
    """
    migrations = discover_migrations(folder)
    with conn.cursor() as cur:
        applied = _applied_if_bootstrapped(cur)
    _check_unchanged(migrations, applied)
    return [m.file_name for m in migrations if m.version not in applied]


def _apply(conn: Connection, migrations: list[Migration]) -> list[str]:
    conn.commit()
    if not _any_pending(conn, migrations):
        # Nothing to do: no lock, no DDL. A role with only SELECT on biobridge.schema_migrations
        # (the loader of schemas/roles.sql) runs the flow's migrate step as this no-op.
        return []
    with conn.cursor() as cur:
        started = time.monotonic()
        cur.execute(f"SELECT pg_advisory_lock({MIGRATION_LOCK_KEY})")
        cur.fetchall()
        conn.commit()
        log.info("migration lock acquired waited_s=%.3f", time.monotonic() - started)
        try:
            return _apply_locked(conn, cur, migrations)
        finally:
            _unlock(conn, cur)


def _any_pending(conn: Connection, migrations: list[Migration]) -> bool:
    """Read-only pre-check; applied rows are committed, so "none pending" stays true."""
    with conn.cursor() as cur:
        applied = _applied_if_bootstrapped(cur)
    conn.commit()
    _check_unchanged(migrations, applied)
    return any(m.version not in applied for m in migrations)


def _apply_locked(conn: Connection, cur: Cursor, migrations: list[Migration]) -> list[str]:
    for statement in _BOOTSTRAP:
        cur.execute(statement)
    conn.commit()
    already = _applied(cur)
    _check_unchanged(migrations, already)
    done: list[str] = []
    for migration in migrations:
        if migration.version in already:
            continue
        started = time.monotonic()
        _apply_one(conn, cur, migration)
        log.info(
            "migration applied file=%s duration_s=%.3f",
            migration.file_name,
            time.monotonic() - started,
        )
        done.append(migration.file_name)
    return done


def _apply_one(conn: Connection, cur: Cursor, migration: Migration) -> None:
    """Run the file and record it in one transaction (ADBC's `executescript` runs it inside the
    transaction the driver keeps open when autocommit is off)."""
    # Literals are safe: an int, a name matching [a-z0-9_]+ and a hex digest.
    record = (
        "INSERT INTO biobridge.schema_migrations (version, name, checksum) VALUES "  # noqa: S608
        f"({migration.version}, '{migration.name}', '{migration.checksum}')"
    )
    try:
        cur.executescript(f"{migration.sql}\n;\n{record}")
        cur.execute(
            "SELECT checksum FROM biobridge.schema_migrations WHERE version = $1",
            (migration.version,),
        )
        row = cur.fetchone()
    except adbc_driver_manager.Error as exc:
        conn.rollback()
        raise MigrationError(
            f"{migration.path}: failed, rolled back: {_server_message(str(exc))}",
            sqlstate=exc.sqlstate,
        ) from exc
    if row is None or row[0] != migration.checksum:
        conn.rollback()
        raise MigrationError(
            f"{migration.path}: its bookkeeping row is missing after running it: "
            "an unterminated comment or string, or a COMMIT in the file? Nothing was recorded."
        )
    conn.commit()


def _applied(cur: Cursor) -> dict[int, tuple[str, str]]:
    cur.execute("SELECT version, name, checksum FROM biobridge.schema_migrations")
    return {version: (name, checksum) for version, name, checksum in cur.fetchall()}


def _applied_if_bootstrapped(cur: Cursor) -> dict[int, tuple[str, str]]:
    cur.execute("SELECT to_regclass('biobridge.schema_migrations') IS NOT NULL")
    row = cur.fetchone()
    return _applied(cur) if row is not None and row[0] else {}


def _check_unchanged(migrations: list[Migration], applied: dict[int, tuple[str, str]]) -> None:
    for migration in migrations:
        if migration.version not in applied:
            continue
        name, checksum = applied[migration.version]
        if (name, checksum) != (migration.name, migration.checksum):
            raise MigrationError(
                f"{migration.path} was applied as {migration.version:04d}_{name}.sql with "
                f"checksum {checksum[:12]}, but the file now has {migration.checksum[:12]}: "
                "an applied migration must not change; restore it and add a new NNNN_*.sql"
            )


def _unlock(conn: Connection, cur: Cursor) -> None:
    """Release the migration lock; if the connection is gone the server released it already."""
    try:
        conn.rollback()
        cur.execute(f"SELECT pg_advisory_unlock({MIGRATION_LOCK_KEY})")
        cur.fetchall()
        conn.commit()
    except adbc_driver_manager.Error as exc:
        log.warning("migration lock not released explicitly: %s", exc)


def _server_message(message: str) -> str:
    """The server's error from an ADBC message, without the (long) script ADBC quotes before it."""
    start = message.find("ERROR:")
    return message[start:].strip() if start >= 0 else message.strip()
