"""How the receiver writes to its store without one durability round per request.

On a local store each worker process logs its objects (`GroupCommitter`): requests that arrive
together are appended to the worker's current log segment as one write and made durable by one
`fdatasync` in the worker's syncer process, and each request is answered once its group is
synced. The objects themselves (metadata file, body file) are created afterwards by the worker's
materializer process (`landing/materializer.py`), at low priority, so a burst costs the request
path only the log append. While a group syncs the next one gathers, so groups grow with load.

The backlog (logged, not yet objects) is bounded: once its oldest record is older than half the
ack deadline, or it holds more than `log_max_backlog_bytes`, new puts fail with StoreUnavailable
(503, Retry-After) until the materializer catches up; `biobridge verify` and health count it.
With `ack_visible`, a put returns only once its object is published (read-after-acknowledge).

Any other store (S3: one PUT per object) is called from worker threads, at most
`s3_max_pool_connections` at a time (the HTTP pool's size), on a limiter of its own so store calls
never wait behind other thread work (or vice versa).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import socket
import struct
import time
import weakref
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.to_thread
import orjson

from landing.commit_log import Segment
from landing.local_store import LocalStore
from landing.materializer import (
    NOTICE,
    SYNC,
    SYNCED,
    start_materializer,
    start_materializer_now,
    start_syncer,
)
from landing.settings import Settings
from landing.store import ObjectMeta, ObjectStore, StoreUnavailable

Put = Callable[[str, bytes, dict[str, object]], Awaitable[None]]
"""`await put(key, body, fields)`: `fields` are the ObjectMeta fields but `sha256` and `size`,
with `received_at` as an ISO string; durable when it returns."""

_HEAD = struct.Struct("<IIII")  # commit_log's frame head: crc, key, meta, body lengths
_LENGTHS = struct.Struct("<III")
_ROTATE_BYTES = 64 << 20  # a new segment after this many bytes or seconds, so the materializer
_ROTATE_S = 1.0  # retires (syncs and deletes) the log as it goes
_REAP_S = 30.0  # at exit, how long to wait for the materializer to publish the rest
_MAX_SYNCS = 4  # groups whose fdatasync runs at once (the syncer's threads)
_RESTART_S = 1.0  # a materializer that dies younger than this is restarted after as long


def store_writer(store: ObjectStore, settings: Settings) -> Put:
    """The receiver's `await put(key, body, fields)` for `store`; durable when it returns."""
    if type(store) is LocalStore and settings.group_commit:
        return GroupCommitter(
            store,
            max_lag_s=settings.ack_deadline_s / 2,
            max_backlog_bytes=settings.log_max_backlog_bytes,
            ack_visible=settings.ack_visible,
        ).put
    limiter = anyio.CapacityLimiter(settings.s3_max_pool_connections)

    def put_sync(key: str, body: bytes, fields: dict[str, object]) -> None:
        store.put(key, body, ObjectMeta.of_fields(body, fields))  # sha256 off the event loop

    async def put(key: str, body: bytes, fields: dict[str, object]) -> None:
        await anyio.to_thread.run_sync(put_sync, key, body, fields, limiter=limiter)

    return put


class GroupCommitter:
    """Logs the puts of each process and event loop in groups; a materializer publishes them."""

    def __init__(
        self,
        store: LocalStore,
        *,
        max_lag_s: float = 150.0,
        max_backlog_bytes: int = 1 << 30,
        ack_visible: bool = False,
    ) -> None:
        self.store = store
        self.max_lag_s = max_lag_s
        self.max_backlog_bytes = max_backlog_bytes
        self.ack_visible = ack_visible
        # One per event loop, kept after the loop ends: `close` retires its log then.
        self._links: dict[asyncio.AbstractEventLoop, _Link] = {}
        self.groups = 0  # synced groups, for tests and measurements
        self.objects = 0

    async def put(self, key: str, body: bytes, fields: dict[str, object]) -> None:
        """Log the object and wait until its group is durable; StoreUnavailable if not.

        An invalid key raises StoreError at once: what is logged always becomes an object."""
        self.store.check_key(key)
        loop = asyncio.get_running_loop()
        link = self._links.get(loop)
        if link is None or link.pid_of_owner != os.getpid():
            link = self._links[loop] = _Link(self, loop)
        await link.enqueue(key, body, orjson.dumps(fields))

    async def drain(self) -> None:
        """Wait until everything this loop logged is published as objects (tests, tools)."""
        link = self._links.get(asyncio.get_running_loop())
        if link is not None:
            await link.drain()

    def close(self) -> None:
        """Stop: the materializers publish what is logged and retire the log (bounded wait)."""
        for link in list(self._links.values()):
            link.close()


@dataclass
class _Group:
    seq: int  # segment
    end: int  # offset after the group's frames
    size: int
    at: float  # monotonic time the group was synced
    waiters: list[asyncio.Future[None]] | None  # ack_visible: answered once published


class _Link:
    """One event loop's log: its segments, its syncer and its materializer (all on the loop)."""

    def __init__(self, owner: GroupCommitter, loop: asyncio.AbstractEventLoop) -> None:
        self.owner = owner
        self.loop = loop
        self.pid_of_owner = os.getpid()  # a forked worker starts a log of its own
        self.segment: Segment | None = None
        self.broken = False
        # Segments not retired yet, held open (and so locked: `recover` never takes a segment
        # our materializer still works on): seq -> [segment, synced up to, closed].
        self.held: dict[int, list[Any]] = {}
        self.unsent: dict[int, tuple[int, bool]] = {}  # notices the materializer has not taken
        self.frames = bytearray()
        self.waiters: list[asyncio.Future[None]] = []
        self.flushing = False  # a flush is scheduled
        # Groups written, their fdatasync asked for, in order: (seq, end, waiters, size).
        self.inflight: collections.deque[tuple[int, int, list[asyncio.Future[None]], int]] = (
            collections.deque()
        )
        self.backlog: collections.deque[_Group] = collections.deque()
        self.backlog_bytes = 0
        self.drained: list[asyncio.Future[None]] = []
        self.closed = False
        self.syncer = self._start(start_syncer, self._on_synced)
        self.materializer_started = time.monotonic()
        # With ack_visible every request waits for it: then it runs at normal priority.
        self.start_materializer = (
            start_materializer_now if owner.ack_visible else start_materializer
        )
        self.materializer = self._start(self.start_materializer, self._on_published)

    # the request path

    def enqueue(self, key: str, body: bytes, meta: bytes) -> asyncio.Future[None]:
        """Add the object to the next group; the future is done once the group is durable."""
        if self.closed:
            raise StoreUnavailable("the receiver is stopping")
        backlog = self.backlog
        if backlog:
            lag = time.monotonic() - backlog[0].at
            if lag > self.owner.max_lag_s or self.backlog_bytes > self.owner.max_backlog_bytes:
                raise StoreUnavailable(
                    f"the receiver's log is {lag:.0f} s / {self.backlog_bytes >> 20} MiB ahead "
                    "of its objects: retry later"
                )
        k = key.encode()
        lengths = _LENGTHS.pack(len(k), len(meta), len(body))
        crc = zlib.crc32(body, zlib.crc32(meta, zlib.crc32(k, zlib.crc32(lengths))))
        frames = self.frames
        frames += _HEAD.pack(crc, len(k), len(meta), len(body))
        frames += k
        frames += meta
        frames += body
        done = self.loop.create_future()
        self.waiters.append(done)
        if not self.flushing and len(self.inflight) < _MAX_SYNCS:
            self.flushing = True
            self.loop.call_soon(self._flush)  # after the other requests of this loop turn
        return done

    def _flush(self) -> None:
        """Write the gathered group to the segment and ask the syncer to make it durable."""
        self.flushing = False
        frames, waiters = self.frames, self.waiters
        if not waiters or self.closed or len(self.inflight) >= _MAX_SYNCS:
            return  # a sync that ends flushes again
        self.frames, self.waiters = bytearray(), []
        try:
            segment = self._segment()
            try:
                segment.append(frames)
            except OSError:
                self.broken = True  # a frame may be cut short: the next group starts a new one
                raise
            self.inflight.append((segment.seq, segment.size, waiters, len(frames)))
            self.syncer[1].send(SYNC.pack(segment.seq, segment.size))
        except OSError as exc:
            if self.inflight and self.inflight[-1][2] is waiters:
                self.inflight.pop()
            self._fail(waiters, exc)

    def _segment(self) -> Segment:
        segment = self.segment
        if (
            segment is None
            or self.broken
            or segment.size >= _ROTATE_BYTES
            or time.monotonic() - segment.opened >= _ROTATE_S
        ):
            new = Segment(self.owner.store.root, sync_folder=False)  # the syncer syncs its name
            if segment is not None:
                self._close_segment(segment)
            self.segment, self.broken = new, False
            self.held[new.seq] = [new, 0, False]
            segment = new
        return segment

    def _close_segment(self, segment: Segment) -> None:
        held = self.held.get(segment.seq)
        if held is None:
            segment.close()
            return
        held[2] = True  # no group is written to it any more
        self._notify_segment(segment.seq)

    def _notify_segment(self, seq: int) -> None:
        """Tell the materializer how far segment `seq` is synced, and that it is closed once
        it is and none of its syncs is still in flight: told closed, the materializer retires
        (deletes) the segment as soon as it has published that far, so a group still syncing
        into it would be lost."""
        held = self.held.get(seq)
        if held is None:
            return
        closed = held[2] and not any(g[0] == seq for g in self.inflight)
        self._notify(seq, held[1], closed=closed)

    def _on_synced(self, data: bytes) -> None:
        seq, end, ok = SYNCED.unpack(data)
        inflight = self.inflight
        if not ok:
            # Every group of that segment fails: a later fdatasync may not report the same
            # write-back error again (its pages were marked clean). The next starts a new one.
            if self.segment is not None and self.segment.seq == seq:
                self.broken = True
            for group in [g for g in inflight if g[0] == seq]:
                inflight.remove(group)
                self._fail(group[2], OSError("fdatasync failed"))
            self._notify_segment(seq)  # closed now, if it was
        visible = self.owner.ack_visible
        at = time.monotonic()
        while inflight and (inflight[0][0], inflight[0][1]) <= (seq, end):
            seq_, end_, waiters, size = inflight.popleft()
            held = self.held.get(seq_)
            if held is not None:
                held[1] = max(held[1], end_)
            self.owner.groups += 1
            self.owner.objects += len(waiters)
            self.backlog.append(_Group(seq_, end_, size, at, waiters if visible else None))
            self.backlog_bytes += size
            if not visible:
                for w in waiters:
                    if not w.done():
                        w.set_result(None)
            self._notify_segment(seq_)
        if self.waiters and not self.flushing:
            self.flushing = True
            self.loop.call_soon(self._flush)

    def _fail(self, waiters: list[asyncio.Future[None]], exc: BaseException) -> None:
        error = StoreUnavailable(f"cannot log under {self.owner.store.root}: {exc}")
        for w in waiters:
            if not w.done():
                w.set_exception(error)

    # the materializer

    def _notify(self, seq: int, end: int, *, closed: bool) -> None:
        """Tell the materializer; what its socket does not take now goes with the next notice."""
        self.unsent[seq] = (end, closed)
        self._send_unsent()

    def _send_unsent(self) -> None:
        sock = self.materializer[1]
        for seq, (end, closed) in sorted(self.unsent.items()):
            try:
                sock.send(NOTICE.pack(seq, end, closed))
            except OSError:  # full (it is busy), or gone (it is restarted and told again)
                return
            del self.unsent[seq]

    def _on_published(self, data: bytes) -> None:
        seq, end, retired = NOTICE.unpack(data)
        backlog = self.backlog
        while backlog and (backlog[0].seq, backlog[0].end) <= (seq, end):
            group = backlog.popleft()
            self.backlog_bytes -= group.size
            for w in group.waiters or ():
                if not w.done():
                    w.set_result(None)
        if not backlog:
            for d in self.drained:
                if not d.done():
                    d.set_result(None)
            self.drained.clear()
        # It works segment by segment in order: progress in `seq` means every earlier segment
        # is retired (its notice of that may have been dropped on a full socket).
        for s in [s for s in self.held if s < seq or (s == seq and retired)]:
            held = self.held.pop(s)
            if held[0] is not self.segment:
                held[0].close()
        if self.unsent:
            self._send_unsent()

    # the helper processes

    def _start(
        self,
        start: Callable[[LocalStore], tuple[int, socket.socket]],
        on_message: Callable[[bytes], None],
    ) -> tuple[int, socket.socket]:
        if start is not start_syncer:
            self.materializer_started = time.monotonic()
        pid, sock = start(self.owner.store)
        sock.setblocking(False)
        self.loop.add_reader(sock.fileno(), self._on_readable, sock, on_message, start)
        weakref.finalize(self, _stop, sock, pid)
        return pid, sock

    def _on_readable(
        self,
        sock: socket.socket,
        on_message: Callable[[bytes], None],
        start: Callable[[LocalStore], tuple[int, socket.socket]],
    ) -> None:
        while True:
            try:
                data = sock.recv(64)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if data:
                on_message(data)
                continue
            # the helper died: start another (the syncer: what it was syncing failed; the
            # materializer: it is told every segment not retired again and starts them over)
            self.loop.remove_reader(sock.fileno())
            pid = self.syncer[0] if start is start_syncer else self.materializer[0]
            _stop(sock, pid)
            if self.closed:
                return
            if start is start_syncer:
                self.syncer = self._start(start_syncer, self._on_synced)
                self.broken = True
                while self.inflight:
                    self._fail(self.inflight.popleft()[2], OSError("the syncer process exited"))
                for seq in list(self.held):
                    self._notify_segment(seq)  # closed ones: none of their syncs is in flight
                if self.waiters and not self.flushing:
                    self.flushing = True
                    self.loop.call_soon(self._flush)
            else:
                # One that dies at once (recovery failing on a full disk) is restarted after a
                # pause, not in a loop of forks.
                died_young = time.monotonic() - self.materializer_started < _RESTART_S
                self.loop.call_later(_RESTART_S if died_young else 0, self._restart_materializer)
            return

    def _restart_materializer(self) -> None:
        """A new materializer, told every segment not retired yet (it starts them over)."""
        if self.closed:
            return
        self.materializer = self._start(self.start_materializer, self._on_published)
        for seq in list(self.held):
            self._notify_segment(seq)

    async def drain(self) -> None:
        while self.inflight or self.waiters:
            await asyncio.sleep(0.001)
        if self.backlog:
            done = self.loop.create_future()
            self.drained.append(done)
            await done

    def close(self) -> None:
        """Stop logging; the materializer publishes everything logged, retires the log and
        exits (waited for up to _REAP_S; what it has not done, `recover` does at next start)."""
        if self.closed:
            return
        self.closed = True
        for _, sock in (self.syncer, self.materializer):
            with contextlib.suppress(OSError, RuntimeError, ValueError):
                self.loop.remove_reader(sock.fileno())
        if self.segment is not None:
            self._close_segment(self.segment)
        self._send_unsent_blocking()
        with contextlib.suppress(OSError):
            # Nothing to yield to any more: let it finish at normal priority (needs the right to
            # lower a nice value, CAP_SYS_NICE; without it, it finishes at nice 19).
            os.setpriority(os.PRIO_PROCESS, self.materializer[0], 0)
        with contextlib.suppress(OSError):
            self.materializer[1].shutdown(socket.SHUT_WR)  # it finishes, then exits
        deadline = time.monotonic() + _REAP_S
        while time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError):
                if os.waitpid(self.materializer[0], os.WNOHANG)[0]:
                    break
            time.sleep(0.01)
        for pid, sock in (self.syncer, self.materializer):
            _stop(sock, pid)

    def _send_unsent_blocking(self) -> None:
        deadline = time.monotonic() + _REAP_S
        while self.unsent and time.monotonic() < deadline:
            self._send_unsent()
            if self.unsent:
                time.sleep(0.01)


def _stop(sock: socket.socket, pid: int) -> None:
    """Close our end (the helper ends) and reap it if done."""
    sock.close()
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
