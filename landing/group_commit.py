"""How the receiver writes to its store without one durability round per request.

A local store gets a `GroupCommitter`: requests queue their object and wait; one committer thread
takes everything queued, stores it with `LocalStore.put_group` (two `syncfs` calls for the whole
group) and wakes each request with its own outcome. While a group commits, the next one gathers,
so the group grows with the load and a lone request waits for one round only.

Any other store (S3: one PUT per object) is called from worker threads, at most
`s3_max_pool_connections` at a time (the HTTP pool's size), on a limiter of its own so store calls
never wait behind other thread work (or vice versa).
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Awaitable, Callable

import anyio
import anyio.to_thread

from landing.local_store import LocalStore
from landing.settings import Settings
from landing.store import ObjectMeta, ObjectStore, StoreError

Put = Callable[[str, bytes, ObjectMeta], Awaitable[None]]
_Item = tuple[str, bytes, ObjectMeta]


def store_writer(store: ObjectStore, settings: Settings) -> Put:
    """The receiver's `await put(key, body, meta)` for `store`; durable when it returns."""
    if type(store) is LocalStore and settings.group_commit:
        return GroupCommitter(store, max_group=settings.group_commit_max).put
    limiter = anyio.CapacityLimiter(settings.s3_max_pool_connections)

    async def put(key: str, body: bytes, meta: ObjectMeta) -> None:
        await anyio.to_thread.run_sync(store.put, key, body, meta, limiter=limiter)

    return put


class GroupCommitter:
    """Queues puts from any number of event loops; one thread commits them in groups."""

    def __init__(self, store: LocalStore, *, max_group: int = 512) -> None:
        self.store = store
        self.max_group = max_group
        self._lock = threading.Lock()
        self._pending: list[tuple[_Item, asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = 0
        self.groups = 0  # committed groups, for tests and measurements
        self.objects = 0

    async def put(self, key: str, body: bytes, meta: ObjectMeta) -> None:
        """Queue the object and wait until its group is durable; raises its StoreError."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        with self._lock:
            self._pending.append(((key, body, meta), loop, done))
            self._ensure_thread()
        self._wake.set()
        await done

    def _ensure_thread(self) -> None:
        # After a fork (one committer per worker process) the parent's thread does not exist.
        if self._thread is None or self._pid != os.getpid() or not self._thread.is_alive():
            self._pid = os.getpid()
            self._thread = threading.Thread(
                target=self._run, name="biobridge-group-commit", daemon=True
            )
            self._thread.start()

    def _run(self) -> None:
        while True:
            self._wake.wait()
            with self._lock:
                group = self._pending[: self.max_group]
                del self._pending[: self.max_group]
                if not self._pending:
                    self._wake.clear()
            if not group:
                continue
            try:
                errors: list[StoreError | None] | list[BaseException] = self.store.put_group(
                    [item for item, _, _ in group]
                )
            except BaseException as exc:  # noqa: BLE001 (each waiter gets the failure)
                errors = [exc] * len(group)
            self.groups += 1
            self.objects += len(group)
            by_loop: dict[asyncio.AbstractEventLoop, list[_Outcome]] = {}
            for (_, loop, done), error in zip(group, errors, strict=True):
                by_loop.setdefault(loop, []).append((done, error))
            for loop, outcomes in by_loop.items():  # one wake-up per event loop, not per request
                try:
                    loop.call_soon_threadsafe(_resolve, outcomes)
                except RuntimeError:  # that loop is closed: nobody waits any more
                    continue


_Outcome = tuple["asyncio.Future[None]", BaseException | None]


def _resolve(outcomes: list[_Outcome]) -> None:
    for done, error in outcomes:
        if done.done():  # the request was cancelled while its group committed
            continue
        if error is None:
            done.set_result(None)
        else:
            done.set_exception(error)
