"""Connections, password masking, error classification and health, against a real Postgres."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import adbc_driver_manager
import pytest
from adbc_driver_postgresql import dbapi
from pydantic import SecretStr

from ops.database_health import database_health
from warehouse.errors import DatabaseError, PermanentDatabaseError, TransientDatabaseError
from warehouse.postgres import (
    Connection,
    connect,
    display_url,
    is_transient,
    url_with_database,
)

PASSWORD = "s3cr3t-Pa55"


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def error_of(conn: Connection, sql: str) -> adbc_driver_manager.Error:
    with conn.cursor() as cur, pytest.raises(adbc_driver_manager.Error) as info:
        cur.execute(sql)
        cur.fetchall()
    conn.rollback()
    return info.value


@pytest.fixture
def two_conns(pg_url: str) -> Iterator[tuple[Connection, Connection]]:
    with connect(pg_url) as a, connect(pg_url) as b:
        with a.cursor() as cur:
            cur.execute("CREATE TABLE t (k int PRIMARY KEY, v int)")
            cur.execute("INSERT INTO t VALUES (1, 0), (2, 0)")
        a.commit()
        yield a, b


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://app:pw@db:5432/x", "postgresql://app:***@db:5432/x"),
        ("postgres://app:p%40ss@db/x?sslmode=require", "postgres://app:***@db/x?sslmode=require"),
        (
            "postgresql://app@db/x?password=pw&sslmode=a",
            "postgresql://app@db/x?password=***&sslmode=a",
        ),
        ("host=db user=app password='a b' dbname=x", "(a key=value connection string, not shown)"),
        ("postgresql://db/x", "postgresql://db/x"),
        # issue 12: an unencoded '@' split the password at the first '@' and showed the rest
        ("postgresql://app:test@only@db/x", "postgresql://app:***@db/x"),
        ("postgresql://app:test only@db/x", "postgresql://app:***@db/x"),
        ("testonlysecret", "(not a URL)"),
    ],
)
def test_display_url_masks_the_password(url: str, expected: str) -> None:
    assert display_url(url) == expected
    assert display_url(SecretStr(url)) == expected


@pytest.mark.parametrize(
    ("url", "hint"),
    [
        ("postgresql://bob:t3st@only-secret@127.0.0.1:{port}/x", "%40"),
        ("postgresql://bob:test only-secret@127.0.0.1:{port}/x", "%20"),
        ("postgresql://bob smith:test-only-secret@127.0.0.1:{port}/x", "%20"),
    ],
)
def test_a_malformed_url_is_refused_without_quoting_the_password(url: str, hint: str) -> None:
    with pytest.raises(PermanentDatabaseError) as info:
        connect(url.format(port=closed_port()))
    message = str(info.value)
    assert hint in message
    assert not any(part in message for part in ("only-secret", "t3st", "test only"))


def test_a_key_value_string_is_never_quoted_back() -> None:
    with pytest.raises(DatabaseError) as info:
        connect("not a url testonlysecret")
    assert "testonlysecret" not in str(info.value)


def test_url_with_database_keeps_host_and_query() -> None:
    assert (
        url_with_database("postgresql://postgres:@/postgres?host=/tmp/pg", "bb")
        == "postgresql://postgres:@/bb?host=/tmp/pg"
    )
    assert url_with_database("postgresql://u@h:5/a", "b") == "postgresql://u@h:5/b"


def test_closed_port_is_transient_and_hides_the_password() -> None:
    url = f"postgresql://postgres:{PASSWORD}@127.0.0.1:{closed_port()}/postgres"
    with pytest.raises(adbc_driver_manager.Error) as raw:
        dbapi.connect(url)  # the driver's own error is classified too
    assert is_transient(raw.value)
    with pytest.raises(TransientDatabaseError) as info:
        connect(url)
    assert PASSWORD not in str(info.value)
    assert "***" in str(info.value)
    assert is_transient(info.value)


def test_missing_database_is_permanent(pg_server_url: str) -> None:
    url = url_with_database(pg_server_url, "bb_no_such_database")
    with pytest.raises(PermanentDatabaseError, match="does not exist") as info:
        connect(url)
    assert not is_transient(info.value)


def test_syntax_error_and_unique_violation_are_permanent(
    two_conns: tuple[Connection, Connection],
) -> None:
    a, _ = two_conns
    syntax = error_of(a, "SELEC 1")
    assert syntax.sqlstate == "42601"
    assert not is_transient(syntax)
    duplicate = error_of(a, "INSERT INTO t VALUES (1, 1)")
    assert duplicate.sqlstate == "23505"
    assert not is_transient(duplicate)


def test_serialization_failure_is_transient(two_conns: tuple[Connection, Connection]) -> None:
    a, b = two_conns
    with a.cursor() as ca, b.cursor() as cb:
        ca.execute("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE")
        ca.execute("SELECT v FROM t WHERE k = 1")
        ca.fetchall()
        cb.execute("UPDATE t SET v = 1 WHERE k = 1")
        b.commit()
    failure = error_of(a, "UPDATE t SET v = 2 WHERE k = 1")
    assert failure.sqlstate == "40001"
    assert is_transient(failure)


def test_deadlock_is_transient(two_conns: tuple[Connection, Connection]) -> None:
    a, b = two_conns
    errors: list[BaseException] = []

    def update(conn: Connection, first: int, second: int, ready: threading.Barrier) -> None:
        try:
            with conn.cursor() as cur:
                cur.execute("SET deadlock_timeout = '50ms'")
                cur.execute(f"UPDATE t SET v = v + 1 WHERE k = {first}")
                ready.wait(5)
                cur.execute(f"UPDATE t SET v = v + 1 WHERE k = {second}")
            conn.commit()
        except adbc_driver_manager.Error as exc:
            errors.append(exc)
            conn.rollback()

    ready = threading.Barrier(2)
    threads = [
        threading.Thread(target=update, args=(a, 1, 2, ready)),
        threading.Thread(target=update, args=(b, 2, 1, ready)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert [getattr(e, "sqlstate", None) for e in errors] == ["40P01"]
    assert is_transient(errors[0])


def test_terminated_connection_is_transient(two_conns: tuple[Connection, Connection]) -> None:
    a, b = two_conns
    with a.cursor() as ca, b.cursor() as cb:
        ca.execute("SELECT pg_backend_pid()")
        row = ca.fetchone()
        assert row is not None
        a.commit()
        cb.execute(f"SELECT pg_terminate_backend({row[0]})")
        cb.fetchall()
        b.commit()
        with pytest.raises(adbc_driver_manager.Error) as info:
            ca.execute("SELECT 1")
            ca.fetchall()
    assert is_transient(info.value)


class Synthetic(Exception):
    def __init__(self, message: str, sqlstate: str | None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


@pytest.mark.parametrize(
    ("sqlstate", "message", "transient"),
    [
        ("40001", "could not serialize access", True),
        ("40P01", "deadlock detected", True),
        ("08006", "connection failure", True),
        ("08001", "unable to connect", True),
        ("57P01", "terminating connection due to administrator command", True),
        ("57P02", "crash shutdown", True),
        ("57P03", "the database system is starting up", True),
        ("53300", "too many connections", True),
        ("23505", "duplicate key value violates unique constraint", False),
        ("21000", "ON CONFLICT DO UPDATE command cannot affect row a second time", False),
        ("42P01", 'relation "x" does not exist', False),
        ("28P01", "password authentication failed", False),
        (None, "server closed the connection unexpectedly", True),
        (None, "no connection to the server", True),
        (None, "FATAL: terminating connection due to administrator command", True),
        (None, "IO: [libpq] Failed to connect: the database system is starting up", True),
        (None, "could not connect to server", True),
        (None, "Connection refused", True),
        (None, "connection timed out", True),
        (None, 'Failed to connect: FATAL: database "x" does not exist', False),
        (None, 'Failed to connect: FATAL: password authentication failed for user "a"', False),
        (None, "FATAL: authentication method requirement failed", False),
        (None, "something else entirely", False),
    ],
)
def test_is_transient_synthetic(sqlstate: str | None, message: str, transient: bool) -> None:
    assert is_transient(Synthetic(message, sqlstate)) is transient


def test_is_transient_on_our_classes_and_plain_exceptions() -> None:
    assert is_transient(TransientDatabaseError("x"))
    assert not is_transient(PermanentDatabaseError("server closed the connection"))
    assert is_transient(ConnectionRefusedError(111, "Connection refused"))
    assert not is_transient(ValueError("bad"))


def test_health_of_a_migrated_database(pg_url: str) -> None:
    report = database_health(pg_url)
    assert report["ok"] is True
    assert report["reachable"] is True
    assert report["pending_migrations"] == []
    assert report["server_version"]
    assert report["error"] is None


def test_health_lists_pending_migrations(pg_empty_url: str) -> None:
    report = database_health(pg_empty_url)
    assert report["reachable"] is True
    assert report["ok"] is False
    assert "0001_init.sql" in report["pending_migrations"]
    assert "pending" in report["error"]


def test_health_of_an_unreachable_server_gives_the_reason_not_the_password() -> None:
    url = f"postgresql://postgres:{PASSWORD}@127.0.0.1:{closed_port()}/postgres"
    report = database_health(url)
    assert report["ok"] is False
    assert report["reachable"] is False
    assert "Connection refused" in report["error"]
    assert PASSWORD not in repr(report)
