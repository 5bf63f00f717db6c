"""Migrations against a real Postgres: once each, in order, concurrently, and over the old table."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import WAITING_ADVISORY_LOCKS
from warehouse.errors import MigrationError
from warehouse.migrate import (
    MIGRATION_LOCK_KEY,
    apply_migrations,
    discover_migrations,
    pending_migrations,
)
from warehouse.postgres import connect

REPO = Path(__file__).resolve().parents[1]
ALL = [m.file_name for m in discover_migrations()]
MIGRATE = (
    "import json, sys; from warehouse.migrate import apply_migrations; "
    "print(json.dumps(apply_migrations(sys.argv[1])))"
)


def rows(url: str, sql: str) -> list[tuple[object, ...]]:
    with connect(url) as conn, conn.cursor() as cur:
        cur.execute(sql)
        return [tuple(r) for r in cur.fetchall()]


def write(folder: Path, name: str, sql: str) -> Path:
    path = folder / name
    path.write_text(sql)
    return path


def test_applies_everything_once(pg_empty_url: str) -> None:
    assert ALL[0] == "0001_init.sql"
    assert apply_migrations(pg_empty_url) == ALL
    assert apply_migrations(pg_empty_url) == []
    with connect(pg_empty_url) as conn:
        assert pending_migrations(conn) == []
        assert apply_migrations(conn) == []
    versions = rows(pg_empty_url, "SELECT version FROM biobridge.schema_migrations ORDER BY 1")
    assert versions == [(m.version,) for m in discover_migrations()]


def test_pending_on_an_empty_database(pg_empty_url: str) -> None:
    with connect(pg_empty_url) as conn:
        assert pending_migrations(conn) == ALL


def test_changed_file_is_named(pg_empty_url: str, tmp_path: Path) -> None:
    write(tmp_path, "0001_a.sql", "CREATE TABLE public.a (x int);")
    changed = write(tmp_path, "0002_b.sql", "CREATE TABLE public.b (x int);")
    assert apply_migrations(pg_empty_url, folder=tmp_path) == ["0001_a.sql", "0002_b.sql"]

    changed.write_text("CREATE TABLE public.b (x bigint);")
    with pytest.raises(MigrationError, match=r"0002_b\.sql") as info:
        apply_migrations(pg_empty_url, folder=tmp_path)
    assert "must not change" in str(info.value)
    with connect(pg_empty_url) as conn, pytest.raises(MigrationError, match=r"0002_b\.sql"):
        pending_migrations(conn, folder=tmp_path)


def test_failed_file_is_rolled_back_and_earlier_ones_kept(
    pg_empty_url: str, tmp_path: Path
) -> None:
    write(tmp_path, "0001_a.sql", "CREATE TABLE public.a (x int);")
    write(
        tmp_path, "0002_b.sql", "CREATE TABLE public.b (x int);\nINSERT INTO public.b VALUES ('x');"
    )
    with pytest.raises(MigrationError, match=r"0002_b\.sql") as info:
        apply_migrations(pg_empty_url, folder=tmp_path)
    assert "invalid input syntax" in str(info.value)
    assert "CREATE TABLE" not in str(info.value)  # the server's reason, not the whole script
    assert rows(
        pg_empty_url, "SELECT to_regclass('public.a') IS NOT NULL, to_regclass('public.b')"
    ) == [(True, None)]
    assert rows(pg_empty_url, "SELECT version FROM biobridge.schema_migrations") == [(1,)]
    # Lock released: a fixed file applies.
    write(tmp_path, "0002_b.sql", "CREATE TABLE public.b (x int);")
    assert apply_migrations(pg_empty_url, folder=tmp_path) == ["0002_b.sql"]


def test_badly_named_file_is_refused(tmp_path: Path) -> None:
    write(tmp_path, "1_init.sql", "SELECT 1;")
    with pytest.raises(MigrationError, match=r"1_init\.sql.*NNNN_lowercase_name\.sql"):
        discover_migrations(tmp_path)


def test_concurrent_migrators_apply_each_file_once(pg_empty_url: str) -> None:
    # Hold the lock so that both processes are waiting on it, then let them race.
    with connect(pg_empty_url) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT pg_advisory_lock({MIGRATION_LOCK_KEY})")
        cur.fetchall()
        conn.commit()
        children = [
            subprocess.Popen(
                [sys.executable, "-c", MIGRATE, pg_empty_url],
                cwd=REPO,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(2)
        ]
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            cur.execute(f"SELECT count(*) {WAITING_ADVISORY_LOCKS}")
            waiting = cur.fetchall()[0][0]
            conn.commit()
            if waiting == 2:
                break
            time.sleep(0.05)
        assert waiting == 2
        cur.execute(f"SELECT pg_advisory_unlock({MIGRATION_LOCK_KEY})")
        cur.fetchall()
        conn.commit()
    results = []
    for child in children:
        out, err = child.communicate(timeout=60)
        assert child.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    assert sorted(results, key=len) == [[], ALL]


OLD_TABLE = """CREATE TABLE public.biometric_events (
    id bigint, user_id text, device_type text, metric_type text, value double precision,
    "timestamp" timestamptz, metadata jsonb, raw_data jsonb)"""
OLD_ROWS = """INSERT INTO public.biometric_events VALUES
    (10, 'u1', 'oura', 'hrv', 41.5, '2024-05-01T00:00:00Z', '{"a": 1}', '{"raw": true}'),
    (11, 'u1', 'oura', 'hrv', 42.0, '2024-05-02T00:00:00Z', NULL, NULL),
    (NULL, 'u2', 'garmin', 'steps', 9000, '2024-05-01T00:00:00Z', NULL, NULL)"""


def create_old_table(url: str, *statements: str) -> None:
    with connect(url) as conn, conn.cursor() as cur:
        for statement in (OLD_TABLE, OLD_ROWS, *statements):
            cur.execute(statement)
        conn.commit()


def test_upgrades_the_old_table_keeping_its_rows(pg_empty_url: str) -> None:
    create_old_table(pg_empty_url)
    before = rows(
        pg_empty_url,
        'SELECT user_id, device_type, metric_type, value, "timestamp", metadata::text, '
        "raw_data::text FROM public.biometric_events ORDER BY 1, 2, 5",
    )
    assert apply_migrations(pg_empty_url) == ALL
    after = rows(
        pg_empty_url,
        'SELECT user_id, device_type, metric_type, value, "timestamp", metadata::text, '
        "raw_data::text FROM public.biometric_events ORDER BY 1, 2, 5",
    )
    assert after == before
    ids = rows(pg_empty_url, "SELECT id FROM public.biometric_events ORDER BY id")
    assert ids == [(10,), (11,), (12,)]  # the NULL id numbered after the largest
    with connect(pg_empty_url) as conn, conn.cursor() as cur:
        cur.execute(
            "INSERT INTO public.biometric_events (user_id, device_type, metric_type, value, "
            "\"timestamp\", source_key) VALUES ('u3', 'whoop', 'hr', 60, now(), 'k') RETURNING id"
        )
        assert cur.fetchall() == [(13,)]
        conn.commit()
    assert rows(
        pg_empty_url,
        "SELECT count(*) FROM pg_indexes WHERE indexname = 'biometric_events_measurement_key'",
    ) == [(1,)]


def test_old_table_with_duplicates_is_refused_untouched(pg_empty_url: str) -> None:
    duplicate = (
        "INSERT INTO public.biometric_events VALUES "
        "(12, 'u1', 'oura', 'hrv', 43.0, '2024-05-01T00:00:00Z', NULL, NULL)"
    )
    create_old_table(pg_empty_url, duplicate)
    with pytest.raises(MigrationError, match=r"0001_init\.sql.*1 duplicated measurement keys"):
        apply_migrations(pg_empty_url)
    assert rows(pg_empty_url, "SELECT count(*) FROM public.biometric_events") == [(4,)]
    assert rows(pg_empty_url, "SELECT to_regclass('biobridge.loads')") == [(None,)]
    with connect(pg_empty_url) as conn:
        assert pending_migrations(conn) == ALL
