"""The group committer's own process: it writes, syncs and publishes the objects of each group.

Creating two files and renaming one costs ~100-140 µs of kernel time per object on ext4, about
three times what uvicorn spends on a whole request. Done on the event loop, that caps the
receiver on one core; done in a thread, each system call gives up the GIL and has to win it back
from the busy loop (a convoy). So each worker process forks one committer process: the worker
sends it the objects of its requests over a socket pair, the committer runs the group commit of
`LocalStore.put_group` (pipelined, see docs/receiver-durability.md) on another core and sends back
one outcome per object once its group is durable.

Wire format, little-endian, both ways over one `socket.socketpair()`:

- worker → committer, one frame per object: `seq:u64 key:u32 meta:u32 body:u32` (lengths),
  then the key, the metadata (`ObjectMeta.to_json`) and the body;
- committer → worker, one frame per group: `count:u32`, then per object `seq:u64 status:u8
  message:u32` and the message (status 0: durable; 1: `StoreError`; 2: `StoreUnavailable`).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import signal
import socket
import struct
import sys
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from landing.commit_log import LOG_FOLDER, Segment, encode, retire
from landing.local_store import LocalStore, StagedGroup
from landing.store import StoreError, StoreUnavailable

REQUEST = struct.Struct("<QIII")
REPLY_COUNT = struct.Struct("<I")
REPLY = struct.Struct("<QBI")
OK, STORE_ERROR, UNAVAILABLE = 0, 1, 2
_PR_SET_PDEATHSIG = 1
_READ_SIZE = 1 << 20
_RETIRE_BYTES = 64 << 20
_RETIRE_S = 1.0

_Item = tuple[str, bytes, bytes]  # key, body, metadata JSON
_Group = tuple[list[int], StagedGroup]  # sequence numbers, staged objects


def start_committer(store: LocalStore, *, max_group: int) -> tuple[int, socket.socket]:
    """Fork the committer process for this process's puts; (its pid, our end of the socket).

    The child keeps only its end of the socket and the standard streams (so it never holds a
    client connection or the listening socket open) and is killed by the kernel when the
    thread that forked it ends (PR_SET_PDEATHSIG): it can never outlive its worker.
    """
    ours, theirs = socket.socketpair()
    parent = os.getpid()
    pid = os.fork()
    if pid != 0:
        theirs.close()
        return pid, ours
    code = 1
    try:
        keep = theirs.fileno()
        os.closerange(3, keep)
        os.closerange(keep + 1, _max_fd())
        _die_with(parent)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the worker; we follow it
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        theirs.setblocking(True)
        serve(theirs, store, max_group=max_group)
        code = 0
    except BaseException as exc:  # noqa: BLE001 (the child must never return into the worker)
        with contextlib.suppress(OSError):
            os.write(2, f"biobridge group committer {os.getpid()} failed: {exc!r}\n".encode())
    finally:
        os._exit(code)


def serve(sock: socket.socket, store: LocalStore, *, max_group: int) -> None:
    """Commit what arrives on `sock` in groups until the worker closes it.

    For each group: append its objects to the log and fdatasync it in a thread while the
    objects are staged (metadata in place, bodies in temp files); once the log is durable,
    rename the bodies into place and answer. See docs/receiver-durability.md.
    """
    reader = _Reader(sock)
    log = _Log(store.root)
    try:
        while True:
            items, seqs = reader.take(max_group, wait=True)
            if not items:
                return  # the worker closed its end
            _reply(sock, (seqs, _commit(store, log, items)))
    finally:
        log.close()


def _commit(store: LocalStore, log: _Log, items: list[_Item]) -> StagedGroup:
    """Log, stage and publish one group; its `errors` say which objects are durable."""
    try:
        if log.broken:
            log.new_segment()
        log.segment.append(encode(items))
        synced = log.thread.submit(log.segment.sync)
    except OSError as exc:  # a frame may be cut short: the next group starts a new segment
        log.broken = True
        return _failed(store, items, exc)
    staged = store.stage(items)  # while the log syncs
    try:
        synced.result()
        store.publish(staged)
    except OSError as exc:  # not durable: nobody is acknowledged
        log.broken = True
        staged.failed(exc)
        return staged
    log.published(staged.folders)
    return staged


def _failed(store: LocalStore, items: list[_Item], exc: OSError) -> StagedGroup:
    group = StagedGroup([key for key, _, _ in items], store.root)
    group.errors = [StoreUnavailable(f"cannot log {key!r} under {store.root}: {exc}")
                    for key, _, _ in items]  # fmt: skip
    return group


class _Log:
    """The committer's current segment, and the retiring of those whose objects are published.

    A segment is retired (a `syncfs` makes its published objects durable, then it is deleted)
    in a thread once it is `_RETIRE_BYTES` long or `_RETIRE_S` old, so a crash leaves at most
    about that much to replay.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.thread = ThreadPoolExecutor(2, thread_name_prefix="biobridge-log")
        self.segment = Segment(root)
        self.opened = time.monotonic()
        self.folders: set[str] = set()
        self.unretired: list[Path] = []
        self.retiring: Future[None] | None = None
        self.retired: list[Path] = []  # what `retiring` deletes once it has synced
        self.broken = False

    def published(self, folders: set[str]) -> None:
        """A group's objects were renamed into place; retire the segment when it is time."""
        self.folders |= folders
        if self.segment.size >= _RETIRE_BYTES or time.monotonic() - self.opened >= _RETIRE_S:
            self._rotate()

    def _rotate(self) -> None:
        if self.retiring is not None:
            if not self.retiring.done():
                return  # the previous retire still syncs: keep appending to this segment
            if self.retiring.exception() is None:
                self.unretired = [p for p in self.unretired if p not in self.retired]
            self.retiring = None
        self.new_segment()
        folders, self.folders = self.folders | {str(self.root / LOG_FOLDER)}, set()
        self.retired = list(self.unretired)
        self.retiring = self.thread.submit(retire, self.retired, folders)

    def new_segment(self) -> None:
        """Append to a new segment from now on; the old one waits for the next retire."""
        segment = Segment(self.root)
        self.segment.close()
        self.unretired.append(self.segment.path)
        self.segment, self.opened, self.broken = segment, time.monotonic(), False

    def close(self) -> None:
        """Retire every segment (the worker is gone: nothing more arrives)."""
        if self.retiring is not None:
            with contextlib.suppress(OSError):
                self.retiring.result()
        self.segment.close()
        with contextlib.suppress(OSError):
            retire([*self.unretired, self.segment.path], self.folders | {str(self.root)})
        self.thread.shutdown()


class _Reader:
    """Request frames from the worker, parsed as they arrive."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = bytearray()
        self.pos = 0
        self.closed = False

    def take(self, most: int, *, wait: bool) -> tuple[list[_Item], list[int]]:
        """Up to `most` whole frames: waits for one when `wait`, else takes what is there."""
        items: list[_Item] = []
        seqs: list[int] = []
        while len(items) < most:
            frame = self._frame()
            if frame is not None:
                seq, item = frame
                seqs.append(seq)
                items.append(item)
                continue
            if self.closed or not self._fill(block=wait and not items):
                break
        return items, seqs

    def _frame(self) -> tuple[int, _Item] | None:
        buf, pos = self.buf, self.pos
        if len(buf) - pos < REQUEST.size:
            return None
        seq, nkey, nmeta, nbody = REQUEST.unpack_from(buf, pos)
        start = pos + REQUEST.size
        end = start + nkey + nmeta + nbody
        if len(buf) < end:
            return None
        key = bytes(buf[start : start + nkey]).decode()
        meta = bytes(buf[start + nkey : start + nkey + nmeta])
        body = bytes(buf[start + nkey + nmeta : end])
        self.pos = end
        if self.pos > _READ_SIZE:  # drop what was consumed, now and then
            del self.buf[: self.pos]
            self.pos = 0
        return seq, (key, body, meta)

    def _fill(self, *, block: bool) -> bool:
        """Read more bytes (waiting for them when `block`); False when none came."""
        try:
            data = self.sock.recv(_READ_SIZE, 0 if block else socket.MSG_DONTWAIT)
        except BlockingIOError:
            return False
        if not data:
            self.closed = True
            return False
        self.buf += data
        return True


def _reply(sock: socket.socket, group: _Group) -> None:
    """Send one outcome per object of `group` (a failed send means the worker is gone)."""
    seqs, staged = group
    parts = [REPLY_COUNT.pack(len(seqs))]
    for seq, error in zip(seqs, staged.errors, strict=True):
        if error is None:
            parts.append(REPLY.pack(seq, OK, 0))
            continue
        status = UNAVAILABLE if isinstance(error, StoreUnavailable) else STORE_ERROR
        message = str(error).encode()
        parts += [REPLY.pack(seq, status, len(message)), message]
    with contextlib.suppress(OSError):
        sock.sendall(b"".join(parts))


def error_of(status: int, message: bytes) -> StoreError:
    """The store error a reply frame carries."""
    cls = StoreUnavailable if status == UNAVAILABLE else StoreError
    return cls(message.decode(errors="replace"))


def _max_fd() -> int:
    try:
        return os.sysconf("SC_OPEN_MAX")
    except (OSError, ValueError):
        return 65536


def _load_prctl() -> Callable[..., int] | None:
    """prctl(2) from the C library, loaded here: never dlopen in a child forked from threads."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        return libc.prctl
    except (OSError, AttributeError):
        return None


_PRCTL = _load_prctl()


def _die_with(parent: int) -> None:
    """Have the kernel kill this process when its parent's thread ends (Linux)."""
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before prctl took effect
        sys.exit(1)
