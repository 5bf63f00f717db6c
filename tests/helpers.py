"""Test helpers: a live uvicorn server in a thread, object counting, a port nobody listens on,
a child's output read as it comes."""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import AsyncExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

import httpx
import uvicorn
from starlette.types import ASGIApp

from landing.keys import new_key
from landing.store import ObjectMeta, ObjectStore

EXAMPLES = Path(__file__).resolve().parents[1] / "deployments" / "examples"

WAITING_ADVISORY_LOCKS = (
    "FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
    "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
)
"""SQL: the advisory-lock requests waiting in the connection's own database (other tests, run at
the same time by another worker, wait in theirs)."""


@contextmanager
def live_server(app: ASGIApp) -> Iterator[str]:
    """Serve `app` with a real uvicorn server on a free port in a thread; yield its base URL."""
    # proto=IPPROTO_TCP: asyncio sets TCP_NODELAY on accepted sockets only when proto says TCP.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def count_objects(store: ObjectStore) -> int:
    """How many objects are under raw/ (what a bad request must not change)."""
    return sum(1 for _ in store.list_keys("raw/"))


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (closed right after binding)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def post_concurrently(
    url: str, posts: Sequence[tuple[str, bytes]], *, per_client: int = 20
) -> list[httpx.Response]:
    """POST every (path, body) at once, one connection each, answers in order.

    Spread over clients of `per_client` connections: httpcore's pool slows down quadratically
    with the connections of one client (200 on one client take ~3 s, on ten ~0.7 s).
    """

    async def post_all() -> list[httpx.Response]:
        verify = ssl.create_default_context()  # one context for all clients: it is slow to build
        async with AsyncExitStack() as stack:
            clients = [
                await stack.enter_async_context(
                    httpx.AsyncClient(
                        base_url=url,
                        timeout=60,
                        verify=verify,
                        limits=httpx.Limits(max_connections=per_client),
                    )
                )
                for _ in range(max(1, -(-len(posts) // per_client)))
            ]
            return await asyncio.gather(
                *(clients[i % len(clients)].post(p, content=b) for i, (p, b) in enumerate(posts))
            )

    return asyncio.run(post_all())


def land(
    store: ObjectStore,
    vendor: str,
    body: bytes,
    *,
    at: datetime | None = None,
    ext: str = "json",
    delivery_id: str = "test",
) -> str:
    """Put a body in the store as the receiver would have landed it at `at`; returns its key."""
    at = at or datetime.now(UTC)
    key = new_key(vendor, at, ext=ext)
    meta = ObjectMeta.of_body(
        body,
        received_at=at,
        vendor=vendor,
        content_type="application/json",
        delivery_id=delivery_id,
    )
    store.put(key, body, meta)
    return key


def backdate(store: ObjectStore, key: str, at: datetime) -> None:
    """Make the local store say it wrote `key` at `at` (its mtime): an object that really
    landed long ago, as far as the store's clock goes (S3's LastModified cannot be set)."""
    from landing.local_store import LocalStore

    assert isinstance(store, LocalStore), "only a local store's write time can be set"
    stamp = at.timestamp()
    os.utime(store.root / key, (stamp, stamp))


class Drained:
    """A child's output stream, read on a thread as it comes: a child that logs more than a pipe
    holds (64 KiB) while the test waits for something else would block on its next line, and a
    stop the test awaits would become a timeout with no output to explain it."""

    def __init__(self, stream: IO[str]) -> None:
        self._lines: list[str] = []
        self._reader = threading.Thread(target=self._lines.extend, args=(stream,), daemon=True)
        self._reader.start()

    def text(self, timeout: float = 10) -> str:
        """What the stream said: all of it once it closed (within `timeout`), else so far."""
        self._reader.join(timeout)
        return "".join(self._lines)


def exit_code(proc: subprocess.Popen[str], timeout: float) -> int | None:
    """The child's exit code, or None if it is still running after `timeout` seconds."""
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        return None
