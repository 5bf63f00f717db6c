"""The embedded PostgreSQL: start, reuse, stop, and recovery after SIGKILL (holder or server)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from pydantic import SecretStr

from tasks.settings import PipelineSettings
from warehouse import embedded_pg
from warehouse.embedded_pg import (
    Listen,
    cluster_folder,
    embedded_tcp_url,
    start_embedded_postgres,
    stop_embedded_postgres,
)
from warehouse.errors import EmbeddedPostgresError
from warehouse.postgres import connect, resolve_database_url

REPO = Path(__file__).resolve().parents[1]
HOLD_SERVER = """
import sys, time
from pathlib import Path
from warehouse.embedded_pg import start_embedded_postgres
print(start_embedded_postgres(Path(sys.argv[1])), flush=True)
time.sleep(120)
"""


@pytest.fixture
def data_dir() -> Iterator[Path]:
    """A data_dir like /tmp/x/.biobridge, whose parents other users can traverse."""
    root = Path(tempfile.mkdtemp(prefix="bb-embedded-"))
    root.chmod(0o755)
    yield root / ".biobridge"
    stop_embedded_postgres(root / ".biobridge")
    pgdata = cluster_folder(root / ".biobridge", create=False)
    if (pgdata / "postmaster.pid").exists():  # a failed test: do not leak a server
        embedded_pg._pg_ctl_stop(pgdata)
    shutil.rmtree(pgdata, ignore_errors=True)
    shutil.rmtree(root, ignore_errors=True)


def server_pid(pgdata: Path) -> int:
    return int((pgdata / "postmaster.pid").read_text().splitlines()[0])


def holders(pgdata: Path) -> list[int]:
    return list(json.loads((pgdata / ".handle_pids.json").read_text()))


def query(url: str, sql: str) -> tuple[object, ...]:
    with connect(url) as conn, conn.cursor() as cur:
        cur.execute(sql)
        row = cur.fetchone()
        assert row is not None
        return tuple(row)


def wait_gone(pid: int, timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return
        except psutil.NoSuchProcess:
            return
        time.sleep(0.05)
    raise AssertionError(f"process {pid} still running after {timeout_s}s")


def test_start_reuse_and_stop(data_dir: Path) -> None:
    settings = PipelineSettings(data_dir=data_dir, database_url=None)
    url = resolve_database_url(settings).get_secret_value()
    pgdata = data_dir / "postgres"
    assert url.startswith(f"postgresql://postgres:@/postgres?host={pgdata}&port=")
    user, database, version = query(
        url, "SELECT current_user, current_database(), current_setting('server_version_num')::int"
    )
    assert (user, database) == ("postgres", "postgres")
    assert int(str(version)) >= 180000
    pid = server_pid(pgdata)

    assert start_embedded_postgres(data_dir) == url
    assert server_pid(pgdata) == pid
    assert holders(pgdata) == [os.getpid()]

    stop_embedded_postgres(data_dir)
    wait_gone(pid)
    assert not (pgdata / "postmaster.pid").exists()


def test_configured_url_wins(tmp_path: Path) -> None:
    secret = "postgresql://app:pw@db.example:5432/biobridge"
    settings = PipelineSettings(data_dir=tmp_path, database_url=SecretStr(secret))
    assert resolve_database_url(settings).get_secret_value() == secret
    assert not (tmp_path / "postgres").exists()


def test_adopts_server_of_a_sigkilled_holder(data_dir: Path) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", HOLD_SERVER, str(data_dir)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    url = child.stdout.readline().strip()
    pgdata = data_dir / "postgres"
    pid = server_pid(pgdata)
    child.send_signal(signal.SIGKILL)
    child.wait(10)
    assert holders(pgdata) == [child.pid]  # the killed holder could not let go

    assert start_embedded_postgres(data_dir) == url
    assert server_pid(pgdata) == pid  # reused, not restarted
    assert query(url, "SELECT 1") == (1,)
    assert holders(pgdata) == [os.getpid()]

    stop_embedded_postgres(data_dir)  # the adopter is the last holder: it stops the server
    wait_gone(pid)


def test_restarts_after_the_server_is_sigkilled(data_dir: Path) -> None:
    url = start_embedded_postgres(data_dir)
    pgdata = data_dir / "postgres"
    pid = server_pid(pgdata)
    os.kill(pid, signal.SIGKILL)
    wait_gone(pid)

    assert start_embedded_postgres(data_dir) == url
    assert server_pid(pgdata) != pid
    assert query(url, "SELECT 1") == (1,)


@pytest.mark.skipif(os.geteuid() != 0, reason="only root relocates the cluster")
def test_root_never_opens_a_closed_parent(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    closed = data_dir.parent / "private"
    closed.mkdir(mode=0o700)
    closed.chmod(0o700)
    monkeypatch.setattr(embedded_pg, "ROOT_FALLBACK_DIR", data_dir.parent / "fallback")
    inner = closed / ".biobridge"

    url = start_embedded_postgres(inner)
    try:
        assert (inner / "postgres").is_symlink()
        pgdata = (inner / "postgres").resolve()
        assert pgdata.parent == data_dir.parent / "fallback"
        assert url.startswith(f"postgresql://postgres:@/postgres?host={pgdata}")
        assert query(url, "SELECT 1") == (1,)
        assert closed.stat().st_mode & 0o777 == 0o700
    finally:
        stop_embedded_postgres(inner)


def tcp_port(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/")[0])


def test_listens_on_loopback_tcp_and_keeps_its_port(data_dir: Path) -> None:
    """Issue 12 Why 4: BI tools connect over TCP (the package alone starts socket-only)."""
    start_embedded_postgres(data_dir)
    tcp = embedded_tcp_url(data_dir)
    assert tcp is not None and tcp.startswith("postgresql://postgres@127.0.0.1:"), tcp
    port = tcp_port(tcp)
    with socket.create_connection(("127.0.0.1", port), timeout=5):
        pass  # a real TCP listener, not only the socket
    assert query(tcp, "SELECT host(inet_server_addr()), inet_server_port()") == ("127.0.0.1", port)

    pid = server_pid(data_dir / "postgres")
    stop_embedded_postgres(data_dir)
    wait_gone(pid)
    assert embedded_tcp_url(data_dir) is None  # stopped: nothing to connect to
    start_embedded_postgres(data_dir)
    assert embedded_tcp_url(data_dir) == tcp  # the BI tool's saved connection still works
    assert query(tcp, "SELECT 1") == (1,)


def test_socket_only_and_a_taken_port(data_dir: Path) -> None:
    url = start_embedded_postgres(data_dir, Listen(host=""))
    assert embedded_tcp_url(data_dir) is None
    assert query(url, "SELECT 1") == (1,)
    stop_embedded_postgres(data_dir)

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        taken_message = f"port {port} .*BIOBRIDGE_EMBEDDED_DB_PORT"
        with pytest.raises(EmbeddedPostgresError, match=taken_message):
            start_embedded_postgres(data_dir, Listen(port=port))


def test_db_start_runs_the_database_alone_and_db_prints_its_tcp_url(data_dir: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BIOBRIDGE_")}
    env["BIOBRIDGE_DATA_DIR"] = str(data_dir)
    cli = [sys.executable, "-m", "deployments.cli", "db"]
    alone = subprocess.Popen([*cli, "start"], cwd=REPO, env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert alone.stdout is not None
        first = alone.stdout.readline()
        assert first.startswith("database up: postgresql://postgres@127.0.0.1:"), first
        tcp = first.split()[2]
        assert query(tcp, "SELECT count(*) FROM pg_stat_activity WHERE false") == (0,)
        printed = subprocess.run(
            cli, cwd=REPO, env=env, capture_output=True, text=True, check=True, timeout=60
        )
        assert printed.stdout.strip() == tcp
        pid = server_pid(data_dir / "postgres")
    finally:
        alone.send_signal(signal.SIGTERM)
        assert alone.wait(30) == 0
    wait_gone(pid)  # the last holder stopped it
