"""Real-Postgres fixtures: one server per session, one fresh database per test (or per module).

The server is `BIOBRIDGE_TEST_DATABASE_URL` (default: the local PostgreSQL on 127.0.0.1:5432).
When the default is unreachable, an embedded server in a temporary folder takes its place, so the
suite runs on a fresh machine; an explicitly configured URL that is unreachable fails the session.

Registered in tests/conftest.py with `pytest_plugins = ["tests.pg"]`.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from warehouse.embedded_pg import start_embedded_postgres, stop_embedded_postgres
from warehouse.errors import DatabaseError
from warehouse.migrate import apply_migrations
from warehouse.postgres import connect, display_url, url_with_database, with_connect_timeout

TEST_DATABASE_URL_ENV = "BIOBRIDGE_TEST_DATABASE_URL"
DEFAULT_TEST_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def create_database(
    server_url: str, *, prefix: str = "bb_test", template: str | None = None
) -> str:
    """Create a database with a random name (empty, or a copy of `template`); return its name."""
    name = f"{prefix}_{secrets.token_hex(6)}"
    _admin(server_url, f"CREATE DATABASE {name}" + (f" TEMPLATE {template}" if template else ""))
    return name


def drop_database(server_url: str, name: str) -> None:
    """Drop `name`, disconnecting whoever is still on it."""
    _admin(server_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _admin(server_url: str, statement: str) -> None:
    # CREATE/DROP DATABASE refuse a transaction block: autocommit.
    with connect(server_url, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(statement)


@pytest.fixture(scope="session")
def pg_server_url() -> Iterator[str]:
    """URL of a Postgres server (its maintenance database) for the whole session."""
    configured = os.environ.get(TEST_DATABASE_URL_ENV)
    url = configured or DEFAULT_TEST_DATABASE_URL
    try:
        connect(with_connect_timeout(url, 3)).close()
    except DatabaseError as exc:
        if configured:
            pytest.fail(f"{TEST_DATABASE_URL_ENV}={display_url(url)} is unreachable: {exc}")
    else:
        yield url
        return
    # Open to other users: as root the embedded server runs as another user (see embedded_pg).
    data_dir = Path(tempfile.mkdtemp(prefix="bb-test-pg-"))
    data_dir.chmod(0o755)
    try:
        yield start_embedded_postgres(data_dir)
    finally:
        stop_embedded_postgres(data_dir)
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_template(pg_server_url: str) -> Iterator[str]:
    """Name of a migrated database that `pg_url` clones (cloning is ~2x faster than migrating)."""
    name = create_database(pg_server_url, prefix="bb_template")
    try:
        apply_migrations(url_with_database(pg_server_url, name))
        yield name
    finally:
        drop_database(pg_server_url, name)


@pytest.fixture
def pg_url(pg_server_url: str, pg_template: str) -> Iterator[str]:
    """URL of a fresh, fully migrated database of this test's own, dropped afterwards."""
    name = create_database(pg_server_url, template=pg_template)
    try:
        yield url_with_database(pg_server_url, name)
    finally:
        drop_database(pg_server_url, name)


@pytest.fixture
def pg_empty_url(pg_server_url: str) -> Iterator[str]:
    """URL of a fresh database with no migration applied (for migration tests)."""
    name = create_database(pg_server_url)
    try:
        yield url_with_database(pg_server_url, name)
    finally:
        drop_database(pg_server_url, name)


@pytest.fixture(scope="module")
def pg_module_url(pg_server_url: str, pg_template: str) -> Iterator[str]:
    """Like `pg_url`, shared by the tests of one module: each must use its own rows or schema."""
    name = create_database(pg_server_url, template=pg_template)
    try:
        yield url_with_database(pg_server_url, name)
    finally:
        drop_database(pg_server_url, name)
