"""schemas/roles.sql on a real server: the flow runs as the loader, who cannot delete or drop.

Roles are cluster-wide, so each test renames them with a random suffix and drops them afterwards.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import adbc_driver_manager
import pytest

from ops.verify import verify
from tests.pg import _admin, create_database, drop_database
from tests.pipeline import make_pipeline
from tests.test_ingest import generic_body, land_raw
from warehouse.migrate import apply_migrations, discover_migrations
from warehouse.postgres import connect, url_with_database

ROLES_SQL = Path(__file__).resolve().parents[1] / "schemas" / "roles.sql"
ROLES = ("biobridge_owner", "biobridge_loader", "biobridge_reader")
PERMISSION_DENIED = "42501"


@dataclass
class Setup:
    admin: str
    owner: str
    loader: str
    reader: str
    names: dict[str, str]

    def apply_roles(self) -> None:
        sql = ROLES_SQL.read_text()
        for role, name in self.names.items():
            sql = sql.replace(role, name)
        with connect(self.admin) as conn, conn.cursor() as cur:
            cur.executescript(sql)
            conn.commit()


def as_user(url: str, user: str, password: str) -> str:
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{quote(user)}:{quote(password)}@{host}"))


@pytest.fixture
def setup(pg_server_url: str) -> Iterator[Setup]:
    suffix = secrets.token_hex(3)
    names = {role: f"{role}_{suffix}" for role in ROLES}
    database = create_database(pg_server_url, prefix="bb_roles")
    admin = url_with_database(pg_server_url, database)
    try:
        urls: dict[str, str] = {}
        result = Setup(admin, "", "", "", names)
        result.apply_roles()
        for role, name in names.items():
            password = secrets.token_urlsafe(12)
            _admin(pg_server_url, f"ALTER ROLE {name} PASSWORD '{password}'")
            urls[role] = as_user(admin, name, password)
        result.owner = urls["biobridge_owner"]
        result.loader = urls["biobridge_loader"]
        result.reader = urls["biobridge_reader"]
        yield result
    finally:
        drop_database(pg_server_url, database)
        for name in names.values():
            _admin(pg_server_url, f"DROP ROLE IF EXISTS {name}")


def refused(url: str, statement: str) -> str | None:
    """The SQLSTATE `statement` fails with as the user of `url` (None: it succeeded)."""
    with connect(url) as conn, conn.cursor() as cur:
        try:
            cur.execute(statement)
        except adbc_driver_manager.Error as exc:
            conn.rollback()
            return exc.sqlstate
        conn.rollback()
    return None


def scalar(url: str, statement: str) -> object:
    with connect(url) as conn, conn.cursor() as cur:
        cur.execute(statement)
        return cur.fetchone()[0]


def test_flow_runs_as_loader_who_cannot_delete_or_drop(
    setup: Setup,
    prefect_harness: None,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    # The optional hardening of docs/security.md: the roles' own grants must be enough.
    with connect(setup.admin) as conn, conn.cursor() as cur:
        cur.execute("SELECT current_database()")
        cur.execute(f"REVOKE ALL ON DATABASE {cur.fetchone()[0]} FROM PUBLIC")
        conn.commit()
    all_files = [m.file_name for m in discover_migrations()]
    assert apply_migrations(setup.owner) == all_files
    setup.apply_roles()  # second pass, after migrating: narrows schema_migrations
    assert apply_migrations(setup.loader) == []  # the flow's migrate step: a read-only no-op

    with contextmanager(make_pipeline)(monkeypatch, tmp_path, setup.loader, None) as p:
        for i in range(3):
            assert p.post("oura", generic_body(f"u_role_{i}")).status_code == 202
        land_raw(p, "garmin", b"{not json")
        state = p.ingest()
        assert state.is_completed(), state.message
        assert (state.result()["files_loaded"], state.result()["rows_inserted"]) == (3, 21)
        replay = p.ingest(mode="replay")  # requeue: updates the ledger and the quarantine
        assert replay.is_completed(), replay.message
        with connect(setup.loader) as conn:
            assert verify(conn, p.store).ok

    owner_name = setup.names["biobridge_owner"]
    assert scalar(setup.admin, "SELECT tableowner FROM pg_tables WHERE tablename = 'loads'") == (
        owner_name
    )
    for statement in (
        "DELETE FROM public.biometric_events",
        "TRUNCATE public.biometric_events",
        "DELETE FROM biobridge.landed_files",
        "DROP TABLE public.biometric_events",
        "DROP TABLE biobridge.loads",
        "ALTER TABLE biobridge.loads ADD COLUMN x int",
        "CREATE TABLE biobridge.x (x int)",
        "CREATE TABLE public.x (x int)",
        "INSERT INTO biobridge.schema_migrations (version, name, checksum) VALUES (99, 'x', 'x')",
    ):
        assert refused(setup.loader, statement) == PERMISSION_DENIED, statement
    assert scalar(setup.loader, "SELECT count(*) FROM public.biometric_events") == 21

    assert scalar(setup.reader, "SELECT count(*) FROM public.biometric_events") == 21
    assert scalar(setup.reader, "SELECT count(*) FROM biobridge.landed_files") == 4
    for statement in (
        "UPDATE public.biometric_events SET value = 0",
        "INSERT INTO biobridge.loads (code_version) VALUES ('x')",
        "CREATE TEMP TABLE x (x int)",
    ):
        assert refused(setup.reader, statement) == PERMISSION_DENIED, statement


def test_existing_database_passes_to_the_owner(setup: Setup) -> None:
    """Migrations applied by a superuser before the roles existed: the file hands them over."""
    with connect(setup.admin) as conn, conn.cursor() as cur:
        cur.execute("REASSIGN OWNED BY " + setup.names["biobridge_owner"] + " TO CURRENT_USER")
        cur.execute("DROP SCHEMA biobridge CASCADE")
        conn.commit()
    assert apply_migrations(setup.admin)  # as the superuser, as before this file existed
    setup.apply_roles()
    assert (
        scalar(setup.admin, "SELECT tableowner FROM pg_tables WHERE tablename = 'biometric_events'")
        == setup.names["biobridge_owner"]
    )
    assert apply_migrations(setup.owner) == []
    assert apply_migrations(setup.loader) == []
    assert refused(setup.loader, "DELETE FROM public.biometric_events") == PERMISSION_DENIED
    assert refused(setup.loader, "INSERT INTO biobridge.loads (code_version) VALUES ('t')") is None


def test_loader_runs_the_fetch_stage_tables_and_readers_see_the_view(setup: Setup) -> None:
    """Migration 0005's tables: the loader stores connections, resolves notifications and
    soft-deletes rows (UPDATE), but deletes nothing; readers read the view of live rows."""
    assert apply_migrations(setup.owner)
    setup.apply_roles()
    allowed = (
        "INSERT INTO biobridge.vendor_connections (vendor, user_id, access_token_enc) "
        "VALUES ('oura', 'u', 'ciphertext')",
        "UPDATE biobridge.vendor_connections SET status = 'needs_reauth'",
        "UPDATE biobridge.notifications SET state = 'fetched'",
        "UPDATE biobridge.fetched_documents SET record_ref = 'x'",
        "UPDATE public.biometric_events SET deleted_at = now(), deleted_by = 'k'",
        "SELECT count(*) FROM public.current_biometric_events",
    )
    for statement in allowed:
        assert refused(setup.loader, statement) is None, statement
    for statement in (
        "DELETE FROM biobridge.vendor_connections",
        "DELETE FROM biobridge.notifications",
        "DELETE FROM biobridge.fetched_documents",
    ):
        assert refused(setup.loader, statement) == PERMISSION_DENIED, statement
    assert refused(setup.reader, "SELECT count(*) FROM public.current_biometric_events") is None
    assert refused(setup.reader, "UPDATE biobridge.notifications SET state = 'x'") == (
        PERMISSION_DENIED
    )
