"""Running the receiver app on uvicorn: the edge limits, the socket, and N worker processes.

Workers are forked from the process that opened the store and bound the socket, so each shares
the listening socket and the settings object as they are (secrets included, never serialised).
Each worker has its own event loop, its own group committer and its own edge limits. A worker
that dies is replaced; a worker whose parent dies is killed by the kernel (PR_SET_PDEATHSIG), so
killing the receiver's process kills all of it.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import os
import resource
import signal
import socket
import time
from types import FrameType

import uvicorn
from starlette.types import ASGIApp

from landing.settings import Settings

logger = logging.getLogger("biobridge.receiver")

_FD_RESERVE = 64  # descriptors kept for the store, logs and the listening socket
_PR_SET_PDEATHSIG = 1


def run(app: ASGIApp, settings: Settings) -> None:
    """Serve `app` on settings.host:port with `settings.workers` processes until signalled."""
    # One log line per request: skip what the receiver's JSON lines never show (the logging
    # HOWTO's "Optimization": no caller frame walk, no thread or process names per record).
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    config = uvicorn_config(app, settings)
    sock = config.bind_socket()
    if settings.workers == 1:
        uvicorn.Server(config).run(sockets=[sock])
        return
    _supervise(config, sock, settings.workers)


def uvicorn_config(app: ASGIApp, settings: Settings) -> uvicorn.Config:
    """uvicorn's config with the receiver's edge limits (httptools protocol, see landing.edge)."""
    limit = _raise_fd_limit()
    max_connections = settings.max_connections
    try:
        from landing.edge import _MAX_LINGERING, EdgeLimits, edge_protocol
    except ImportError:  # no httptools: uvicorn's h11 protocol, with its own limits only
        http: object = "h11"
    else:
        # Never accept more connections than descriptors allow: accept() failing with EMFILE
        # is what floods the log with "Too many open files".
        max_connections = max(1, min(max_connections, limit - _MAX_LINGERING - _FD_RESERVE))
        http = edge_protocol(
            EdgeLimits(settings.model_copy(update={"max_connections": max_connections}))
        )
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        http=http,  # type: ignore[arg-type]
        backlog=settings.backlog,
        timeout_keep_alive=settings.keep_alive_s,  # type: ignore[arg-type]
        h11_max_incomplete_event_size=settings.max_url_bytes + settings.max_header_bytes,
        access_log=False,  # the receiver logs one structured line per request itself
        server_header=False,
        lifespan="auto",  # the app's shutdown publishes what its worker logged
    )


def _raise_fd_limit() -> int:
    """Raise the soft limit on open files to the hard limit; return the soft limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = max(soft, 65536)
    if soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
    return soft


def _supervise(config: uvicorn.Config, sock: socket.socket, workers: int) -> None:
    """Fork `workers` servers on `sock`; replace any that dies until SIGTERM or SIGINT."""
    children: set[int] = set()
    stopping = False
    parent = os.getpid()

    def spawn() -> None:
        pid = os.fork()
        if pid == 0:  # the worker
            code = 0
            try:
                _die_with(parent)
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                uvicorn.Server(config).run(sockets=[sock])
            except BaseException:
                logger.exception("receiver worker %d failed", os.getpid())
                code = 1
            finally:
                logging.shutdown()
                os._exit(code)
        children.add(pid)

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for pid in list(children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for _ in range(workers):
        spawn()
    logger.info("receiver serving with %d worker processes", workers)
    while children:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        children.discard(pid)
        if not stopping:
            logger.warning("receiver worker %d exited (status %d): starting another", pid, status)
            time.sleep(0.5)  # a worker failing at start must not spin the parent
            spawn()
    sock.close()


def _die_with(parent: int) -> None:
    """Have the kernel kill this process when its parent dies (Linux; elsewhere a no-op)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)
