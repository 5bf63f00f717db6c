"""How the receiver writes to its store without one durability round per request.

A local store gets a `GroupCommitter`: requests queue their object and wait; one committer takes
everything queued, stores it as `LocalStore.put_group` does (two `syncfs` calls for the whole
group) and wakes each request with its own outcome. While a group commits, the next one gathers,
so the group grows with the load and a lone request waits for one round only.

Any other store (S3: one PUT per object) is called from worker threads, at most
`s3_max_pool_connections` at a time (the HTTP pool's size), on a limiter of its own so store calls
never wait behind other thread work (or vice versa).
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor

import anyio
import anyio.to_thread

from landing.local_store import LocalStore, StagedGroup, sync_folders
from landing.settings import Settings
from landing.store import ObjectMeta, ObjectStore, StoreUnavailable

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
    """Commits the puts of each event loop in groups: one committer task per loop, while busy.

    The committer writes a group's files on the event loop itself (small bodies: a few tens of
    microseconds each) and waits for each `syncfs` in a thread of its own. Writing from a
    thread instead was measured slower: every system call of that thread gives up the GIL and
    waits to get it back from the busy event loop (a convoy). Groups whose bodies are large
    are written in that thread, so the loop never stalls for long.
    """

    def __init__(self, store: LocalStore, *, max_group: int = 512) -> None:
        self.store = store
        self.max_group = max_group
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopCommitter] = (
            weakref.WeakKeyDictionary()
        )
        self.groups = 0  # committed groups, for tests and measurements
        self.objects = 0

    async def put(self, key: str, body: bytes, meta: ObjectMeta) -> None:
        """Queue the object and wait until its group is durable; raises its StoreError."""
        loop = asyncio.get_running_loop()
        committer = self._loops.get(loop)
        if committer is None:
            committer = self._loops[loop] = _LoopCommitter(self)
        done: asyncio.Future[None] = loop.create_future()
        committer.pending.append(((key, body, meta), done))
        if committer.task is None:
            committer.task = loop.create_task(committer.run())
        await done


_Waiter = tuple[_Item, "asyncio.Future[None]"]
_Group = tuple[list[_Waiter], StagedGroup]
_INLINE_BYTES = 256 * 1024  # groups with more body bytes than this are written in the thread


class _LoopCommitter:
    def __init__(self, owner: GroupCommitter) -> None:
        self.owner = owner
        self.pending: list[_Waiter] = []
        self.task: asyncio.Task[None] | None = None
        # One thread per loop and process: it only waits in syncfs (and writes big groups).
        self.thread = ThreadPoolExecutor(1, thread_name_prefix="biobridge-sync")

    async def run(self) -> None:
        """Commit groups while any put waits, then end (the next put starts a new run).

        Pipelined: one syncfs both makes the previous group's renames durable (so it is
        acknowledged) and this group's metadata and body bytes durable (so its bodies may be
        renamed into place). Each object still waits for two syncs after it was written, in
        that order; a group costs one sync instead of two.
        """
        store, loop = self.owner.store, asyncio.get_running_loop()
        published: _Group | None = None  # renamed, waiting for the sync that makes it durable
        staged: _Group | None = None
        try:
            while self.pending or published is not None:
                waiters = self.pending[: self.owner.max_group]
                del self.pending[: self.owner.max_group]
                staged = await self._stage(waiters) if waiters else None
                groups = [g for g in (published, staged) if g is not None]
                folders = set().union(*(g[1].folders for g in groups if g[1].staged))
                try:
                    if folders:
                        await loop.run_in_executor(self.thread, sync_folders, folders)
                except OSError as exc:  # neither group is durable: nobody is acknowledged
                    for g in groups:
                        g[1].failed(exc)
                        self._resolve(g)
                    published = None
                    continue
                if published is not None:
                    self._resolve(published)
                published = None
                if staged is not None:
                    try:
                        store.publish(staged[1])
                    except OSError as exc:
                        staged[1].failed(exc)
                        self._resolve(staged)
                    else:
                        published = staged
        except BaseException as exc:  # cancelled or a bug: nobody waiting is acknowledged
            inflight = [w for g in (published, staged) if g is not None for w in g[0]]
            for _, done in [*inflight, *self.pending]:
                if not done.done():
                    done.set_exception(StoreUnavailable(f"group commit failed: {exc!r}"))
            raise
        finally:
            self.task = None

    async def _stage(self, waiters: list[_Waiter]) -> _Group:
        store = self.owner.store
        items = [item for item, _ in waiters]
        try:
            if sum(len(body) for _, body, _ in items) > _INLINE_BYTES:
                loop = asyncio.get_running_loop()
                staged = await loop.run_in_executor(self.thread, store.stage, items)
            else:
                staged = store.stage(items)
        except BaseException as exc:
            for _, done in waiters:
                if not done.done():
                    done.set_exception(StoreUnavailable(f"group commit failed: {exc!r}"))
            raise
        return waiters, staged

    def _resolve(self, group: _Group) -> None:
        waiters, staged = group
        self.owner.groups += 1
        self.owner.objects += len(waiters)
        for (_, done), error in zip(waiters, staged.errors, strict=True):
            if done.done():  # the request was cancelled while its group committed
                continue
            if error is None:
                done.set_result(None)
            else:
                done.set_exception(error)
