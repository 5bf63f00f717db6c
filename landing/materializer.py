"""The worker's two helper processes: the syncer (fdatasync of its log) and the materializer,
a low-priority process that turns the worker's logged records into objects.

The worker acknowledges a webhook once its frame is in a synced segment of the log
(`landing/commit_log.py`); creating the object (two files and a rename, ~100 µs of kernel time
on ext4, several times what a whole request costs) is left to this process, one per worker,
forked by it at its first put and run at `nice 19`: during a burst it yields the CPU to request
handling and catches up afterwards. See docs/receiver-durability.md.

For each segment, in order, it reads the frames the worker has synced, writes each object
(metadata first, the body renamed into place last: an object appears whole or not at all), and
once the worker has closed the segment and every object of it is published, syncs the file
system and deletes the segment. When it starts, it first publishes the segments no live worker
holds (a worker that died: `recover`).

Messages, one `struct` per datagram over a `SOCK_SEQPACKET` socket pair (so each arrives whole):

- worker → materializer `seq:u64 end:u64 closed:u8`: segment `seq` is synced up to `end`
  (closed: the worker will write no more to it); absolute, so a repeat is harmless;
- materializer → worker `seq:u64 end:u64 retired:u8`: the objects of segment `seq` up to `end`
  are published (retired: the segment is synced as objects and deleted).

When the worker closes its end, the materializer publishes everything synced, retires every
segment and exits. The kernel kills it when its worker dies (PR_SET_PDEATHSIG); `recover` at the
next start (or the next worker's materializer) then publishes what it had not.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import select
import signal
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from landing.commit_log import (
    LOG_FOLDER,
    Item,
    decode_ends,
    materialize,
    recover,
    segment_path,
    sync_folder_of,
)
from landing.local_store import LocalStore, sync_folders
from landing.store import StoreUnavailable

NOTICE = struct.Struct("<QQB")  # both ways: seq, end, closed (to it) / retired (from it)
SYNC = struct.Struct("<QQ")  # to the syncer: seq, end
SYNCED = struct.Struct("<QQB")  # from the syncer: seq, end, ok
SYNC_THREADS = 4
NICE = 19
BATCH_RECORDS = 256  # objects published between two progress reports
_READ_BYTES = 4 << 20
_IDLE_ADOPT_S = 30.0  # when idle, look for segments of dead workers this often
_RETRY_S = 1.0  # pause before retrying records that could not be written (a full disk)
_PR_SET_PDEATHSIG = 1
_PR_SET_NAME = 15
SYNCER = b"bb-syncer"  # the helpers' process names (at most 15 bytes)
MATERIALIZER = b"bb-materializer"


def start_materializer(store: LocalStore) -> tuple[int, socket.socket]:
    """Fork this worker's materializer (nice 19); (its pid, our end of the socket pair)."""
    return _fork(
        lambda sock, worker: Materializer(store, sock, worker).run(), nice=NICE, name=MATERIALIZER
    )


def start_materializer_now(store: LocalStore) -> tuple[int, socket.socket]:
    """The materializer at normal priority: with `ack_visible` requests wait for it."""
    return _fork(
        lambda sock, worker: Materializer(store, sock, worker).run(), nice=0, name=MATERIALIZER
    )


def start_syncer(store: LocalStore) -> tuple[int, socket.socket]:
    """Fork this worker's syncer; (its pid, our end of the socket pair).

    The syncer runs the worker's `fdatasync` calls: a thread of the worker would need the GIL
    back from the busy event loop after each one (measured: ~14 µs of the loop's CPU per
    request, and a forced GIL switch per group), a process does not.
    Messages: worker → syncer `SYNC` (segment `seq` is written up to `end`: make it durable),
    syncer → worker `SYNCED` (`ok` 1: durable up to `end`; 0: fdatasync failed). Up to
    SYNC_THREADS syncs run at once, so answers may come out of order.
    """
    return _fork(lambda sock, worker: Syncer(store, sock, worker).run(), nice=0, name=SYNCER)


def _fork(
    body: Callable[[socket.socket, int], None], *, nice: int, name: bytes
) -> tuple[int, socket.socket]:
    """Fork a helper of this worker running `body(its socket, worker pid)`, named `name` (its
    /proc/PID/comm: `ps` and benchmarks/receiver.py tell the helpers apart by it).

    The child keeps only its end of the socket and the standard streams (never a client
    connection or the listening socket) and is killed by the kernel when the thread that forked
    it ends (PR_SET_PDEATHSIG): it never outlives its worker.
    """
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
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
        if _PRCTL is not None:
            _PRCTL(_PR_SET_NAME, ctypes.c_char_p(name), 0, 0, 0)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the worker; we follow it
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        if nice:
            with contextlib.suppress(OSError):
                os.nice(nice)
        body(theirs, parent)
        code = 0
    except BaseException as exc:  # noqa: BLE001 (the child must never return into the worker)
        with contextlib.suppress(OSError):
            os.write(2, f"biobridge log helper {os.getpid()} failed: {exc!r}\n".encode())
    finally:
        os._exit(code)


class Syncer:
    """The syncer's loop: fdatasync what the worker wrote (several at once), answer each."""

    def __init__(self, store: LocalStore, sock: socket.socket, worker: int) -> None:
        self.store = store
        self.sock = sock
        self.worker = worker
        self.fds: dict[int, int] = {}  # the last few segments' descriptors
        self.lock = threading.Lock()  # the socket's sends

    def run(self) -> None:
        self.sock.setblocking(True)
        # Flushes of one device overlap: a sync started while another runs need not wait for it
        # to end (measured here: 1 thread ~640 syncs/s, 4 threads ~7,000).
        with ThreadPoolExecutor(SYNC_THREADS) as threads:
            while True:
                data = self.sock.recv(SYNC.size)
                if not data:
                    return
                seq, end = SYNC.unpack(data)
                fd = self.fds.get(seq)
                if fd is None:
                    fd = self._open(seq)
                threads.submit(self._sync, seq, end, fd)

    def _open(self, seq: int) -> int:
        """A new segment: make its name durable before any sync of it answers."""
        path = segment_path(self.store.root, self.worker, seq)
        try:
            fd = os.open(path, os.O_RDONLY)
            sync_folder_of(path)
        except OSError:
            return -1
        self.fds[seq] = fd
        for old in sorted(self.fds)[:-SYNC_THREADS]:  # no sync of those is queued any more
            os.close(self.fds.pop(old))
        return fd

    def _sync(self, seq: int, end: int, fd: int) -> None:
        try:
            os.fdatasync(fd)
            ok = fd >= 0
        except OSError:
            ok = False
        with self.lock, contextlib.suppress(OSError):
            self.sock.send(SYNCED.pack(seq, end, ok))


@dataclass
class _Segment:
    path: Path
    fd: int
    synced: int = 0  # the worker synced up to here
    done: int = 0  # published up to here
    closed: bool = False
    folders: set[str] = field(default_factory=set)


class Materializer:
    """The materializer's loop (also run in-process by tests)."""

    def __init__(self, store: LocalStore, sock: socket.socket, worker: int) -> None:
        self.store = store
        self.sock = sock
        self.worker = worker
        self.segments: dict[int, _Segment] = {}
        self.open = True  # the worker's end is open

    def run(self) -> None:
        recover(self.store)  # segments of workers that died (a live worker's are locked)
        while True:
            work = self._next()
            got = self._receive(block=work is None)
            if work is not None:
                self._advance(work)
            elif not got:
                if not self.open:
                    return  # the worker closed its end and everything is retired
                recover(self.store)  # idle a while: publish what dead workers left

    def _next(self) -> int | None:
        """The lowest segment with something to do (publish or retire)."""
        for seq in sorted(self.segments):
            s = self.segments[seq]
            if s.done < s.synced or s.closed:
                return seq
        return None

    def _receive(self, *, block: bool) -> bool:
        """Take the worker's notices (waiting up to _IDLE_ADOPT_S for one when `block`)."""
        got = False
        while self.open:
            if block and not got and not select.select([self.sock], [], [], _IDLE_ADOPT_S)[0]:
                return False
            try:
                data = self.sock.recv(NOTICE.size, socket.MSG_DONTWAIT)
            except BlockingIOError:
                return got
            except OSError:
                data = b""
            got = True
            if not data:
                # The worker is done: publish everything its segments hold (also what a notice
                # it could not send would have said) and retire them.
                self.open = False
                for each in self.segments.values():
                    each.closed = True
                    with contextlib.suppress(OSError):
                        each.synced = max(each.synced, os.fstat(each.fd).st_size)
                return got
            seq, end, closed = NOTICE.unpack(data)
            s = self.segments.get(seq)
            if s is None:
                path = segment_path(self.store.root, self.worker, seq)
                try:
                    fd = os.open(path, os.O_RDONLY)
                except FileNotFoundError:
                    continue  # retired already (a repeated notice)
                s = _Segment(path, fd)
                self.segments[seq] = s
            s.synced = max(s.synced, end)
            s.closed = s.closed or bool(closed)
        return got

    def _advance(self, seq: int) -> None:
        """Publish up to BATCH_RECORDS more records of segment `seq`, or retire it."""
        s = self.segments[seq]
        if s.done < s.synced:
            records, end = _frames(s, min(s.synced - s.done, _READ_BYTES))
            if not records:  # one frame longer than a read
                records, end = _frames(s, s.synced - s.done)
            if not records:  # never: the worker reports whole frames only
                s.done = s.synced
                return
            done = materialize(self.store, records)
            s.folders |= done.folders
            if any(isinstance(e, StoreUnavailable) for e in done.errors):
                # e.g. a full disk: these records are acknowledged, so never skip them. Retry
                # the batch (rewriting what did land is harmless) after a pause.
                time.sleep(_RETRY_S)
                return
            s.done = end
            self._tell(seq, end, retired=False)
            return
        # closed and all published: make the objects durable as objects, then drop the records
        sync_folders(s.folders | {str(self.store.root / LOG_FOLDER)})
        with contextlib.suppress(FileNotFoundError):
            s.path.unlink()
        os.close(s.fd)
        del self.segments[seq]
        self._tell(seq, s.done, retired=True)

    def _tell(self, seq: int, end: int, *, retired: bool) -> None:
        """Report progress; dropped when the worker's socket is full (the next one says more)."""
        with contextlib.suppress(OSError):
            self.sock.send(NOTICE.pack(seq, end, retired), socket.MSG_DONTWAIT)


def _frames(s: _Segment, size: int) -> tuple[list[Item], int]:
    """Up to BATCH_RECORDS whole frames from where `s` is done; and the offset after them."""
    data = os.pread(s.fd, size, s.done)
    records: list[Item] = []
    end = s.done
    for frame_end, item in decode_ends(data):
        records.append(item)
        end = s.done + frame_end
        if len(records) >= BATCH_RECORDS:
            break
    return records, end


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
