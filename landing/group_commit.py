"""How the receiver writes to its store without one durability round per request.

A local store gets a `GroupCommitter`: each worker process forks a committer process
(`landing.commit_process`) and sends it every object to store; the committer stores them in
groups as `LocalStore.put_group` does (two `syncfs` calls for a whole group, pipelined) and
answers each object with its own outcome once its group is durable. While a group commits, the
next one gathers, so the group grows with the load and a lone request waits for two syncs only.

Any other store (S3: one PUT per object) is called from worker threads, at most
`s3_max_pool_connections` at a time (the HTTP pool's size), on a limiter of its own so store calls
never wait behind other thread work (or vice versa).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import socket
import weakref
from collections.abc import Awaitable, Callable

import anyio
import anyio.to_thread

from landing.commit_process import REPLY, REPLY_COUNT, REQUEST, error_of, start_committer
from landing.local_store import LocalStore
from landing.settings import Settings
from landing.store import ObjectMeta, ObjectStore, StoreUnavailable

Put = Callable[[str, bytes, ObjectMeta], Awaitable[None]]


def store_writer(store: ObjectStore, settings: Settings) -> Put:
    """The receiver's `await put(key, body, meta)` for `store`; durable when it returns."""
    if type(store) is LocalStore and settings.group_commit:
        return GroupCommitter(store, max_group=settings.group_commit_max).put
    limiter = anyio.CapacityLimiter(settings.s3_max_pool_connections)

    async def put(key: str, body: bytes, meta: ObjectMeta) -> None:
        await anyio.to_thread.run_sync(store.put, key, body, meta, limiter=limiter)

    return put


class GroupCommitter:
    """Commits the puts of each process and event loop in groups, in a committer process."""

    def __init__(self, store: LocalStore, *, max_group: int = 512) -> None:
        self.store = store
        self.max_group = max_group
        self._links: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Link] = (
            weakref.WeakKeyDictionary()
        )
        self.groups = 0  # committed groups, for tests and measurements
        self.objects = 0

    async def put(self, key: str, body: bytes, meta: ObjectMeta) -> None:
        """Queue the object and wait until its group is durable; raises its StoreError."""
        loop = asyncio.get_running_loop()
        link = self._links.get(loop)
        if link is None or link.closed or link.pid_of_owner != os.getpid():
            link = self._links[loop] = _Link(self, loop)
        await link.send(key, body, meta.to_json())


class _Link:
    """One event loop's connection to its committer process."""

    def __init__(self, owner: GroupCommitter, loop: asyncio.AbstractEventLoop) -> None:
        self.owner = owner
        self.loop = loop
        self.pid_of_owner = os.getpid()  # a forked worker starts a committer of its own
        self.pid, self.sock = start_committer(owner.store, max_group=owner.max_group)
        self.sock.setblocking(False)
        self.waiting: dict[int, asyncio.Future[None]] = {}
        self.seq = itertools.count()
        # Frames wait in `held` while the committer works on earlier ones (it reads them only
        # once that group is answered anyway), then go out together: one send per group.
        self.held = bytearray()
        self.held_frames = 0
        self.out = bytearray()  # being sent
        self.unanswered = 0  # frames sent, not answered yet
        self.inbox = bytearray()
        self.closed = False
        loop.add_reader(self.sock.fileno(), self._on_readable)
        weakref.finalize(self, _stop, self.sock, self.pid)

    async def send(self, key: str, body: bytes, meta: bytes) -> None:
        seq = next(self.seq)
        encoded = key.encode()
        done = self.loop.create_future()
        self.waiting[seq] = done
        if not self.held_frames and not self.unanswered:  # the committer waits: send soon
            self.loop.call_soon(self._flush)
        self.held += REQUEST.pack(seq, len(encoded), len(meta), len(body))
        self.held += encoded
        self.held += meta
        self.held += body
        self.held_frames += 1
        await done

    def _flush(self) -> None:
        """Send the held frames (what the socket does not take now goes when it is writable)."""
        if self.closed or not self.held_frames:
            return
        self.unanswered += self.held_frames
        self.out += self.held
        self.held.clear()
        self.held_frames = 0
        self._send()

    def _send(self) -> None:
        try:
            sent = self.sock.send(self.out)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            self._fail(exc)
            return
        del self.out[:sent]
        if self.out:
            self.loop.add_writer(self.sock.fileno(), self._on_writable)

    def _on_writable(self) -> None:
        self.loop.remove_writer(self.sock.fileno())
        if not self.closed:
            self._send()

    def _on_readable(self) -> None:
        try:
            data = self.sock.recv(1 << 20)
        except BlockingIOError:
            return
        except OSError as exc:
            self._fail(exc)
            return
        if not data:
            self._fail(EOFError("the committer process exited"))
            return
        self.inbox += data
        self._resolve()

    def _resolve(self) -> None:
        """Wake the waiter of every object the committer answered (one frame per group)."""
        buf, pos = self.inbox, 0
        while len(buf) - pos >= REPLY_COUNT.size:
            (count,) = REPLY_COUNT.unpack_from(buf, pos)
            end, outcomes = pos + REPLY_COUNT.size, []
            for _ in range(count):
                if len(buf) - end < REPLY.size:
                    break
                seq, status, length = REPLY.unpack_from(buf, end)
                end += REPLY.size + length
                outcomes.append((seq, status, bytes(buf[end - length : end])))
            if len(outcomes) < count or end > len(buf):
                break  # the rest of this group's frame has not arrived yet
            pos = end
            self.unanswered -= count
            self.owner.groups += 1
            self.owner.objects += count
            for seq, status, message in outcomes:
                done = self.waiting.pop(seq, None)
                if done is None or done.done():  # the request was cancelled meanwhile
                    continue
                if status == 0:
                    done.set_result(None)
                else:
                    done.set_exception(error_of(status, message))
        del buf[:pos]
        if not self.unanswered:
            self._flush()

    def _fail(self, exc: BaseException) -> None:
        """The committer is gone: nobody waiting is acknowledged; the next put starts another."""
        self.closed = True
        self.loop.remove_reader(self.sock.fileno())
        self.loop.remove_writer(self.sock.fileno())
        for done in self.waiting.values():
            if not done.done():
                done.set_exception(StoreUnavailable(f"group commit failed: {exc!r}"))
        self.waiting.clear()
        _stop(self.sock, self.pid)


def _stop(sock: socket.socket, pid: int) -> None:
    """Close our end (the committer ends once its groups are answered) and reap it if done."""
    sock.close()
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
