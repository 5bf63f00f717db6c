"""The committer's log: objects appended to a segment file, made durable by one fdatasync a group.

Each committer process appends every object of a group to its own segment file in
`<landing>/.wal/` (a dot-folder: never listed as objects) and syncs that one file, not the whole
file system. Once the file system has been synced after the objects were published, the segment
is no longer needed and is deleted; `recover` replays what a crash left behind. Frames are
checksummed, so a frame cut short by a crash (never acknowledged) is recognised and dropped.

Frame, little-endian: `crc32:u32 key:u32 meta:u32 body:u32` (the three lengths), then the key,
the metadata JSON and the body; the CRC-32 covers the lengths and the three parts.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import os
import struct
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path

from landing.local_store import LocalStore, sync_folders
from landing.store import StoreUnavailable

LOG_FOLDER = ".wal"
_SUFFIX = ".log"
_HEAD = struct.Struct("<IIII")
_LENGTHS = struct.Struct("<III")
_SEGMENT_SEQ = itertools.count()

Item = tuple[str, bytes, bytes]  # key, body, metadata JSON


def encode(items: Sequence[Item]) -> bytes:
    """The frames of `items`, ready to append."""
    parts: list[bytes] = []
    for key, body, meta in items:
        k = key.encode()
        lengths = _LENGTHS.pack(len(k), len(meta), len(body))
        crc = zlib.crc32(body, zlib.crc32(meta, zlib.crc32(k, zlib.crc32(lengths))))
        parts += [struct.pack("<I", crc), lengths, k, meta, body]
    return b"".join(parts)


def decode(data: bytes) -> Iterator[Item]:
    """The whole frames of a segment, in order, up to the first torn or corrupt one."""
    pos = 0
    view = memoryview(data)
    while len(data) - pos >= _HEAD.size:
        crc, nkey, nmeta, nbody = _HEAD.unpack_from(data, pos)
        start = pos + _HEAD.size
        end = start + nkey + nmeta + nbody
        if end > len(data):
            return
        lengths = view[pos + 4 : start]
        payload = view[start:end]
        if zlib.crc32(payload, zlib.crc32(lengths)) != crc:
            return
        key = bytes(view[start : start + nkey]).decode()
        meta = bytes(view[start + nkey : start + nkey + nmeta])
        yield key, bytes(view[start + nkey + nmeta : end]), meta
        pos = end


class Segment:
    """One committer's open segment: appended to, synced, then retired once published."""

    def __init__(self, root: Path) -> None:
        folder = root / LOG_FOLDER
        new_folder = not folder.is_dir()
        folder.mkdir(parents=True, exist_ok=True)
        while True:
            self.path = folder / f"{os.getpid()}-{next(_SEGMENT_SEQ):06d}{_SUFFIX}"
            self.fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
            # Held while the segment is written: `recover` (another process) skips it.
            fcntl.flock(self.fd, fcntl.LOCK_EX)
            if os.fstat(self.fd).st_nlink:  # not recovered and deleted before we locked it
                break
            os.close(self.fd)
        _fsync_dir(folder)  # the segment's name is durable before anything in it is acknowledged
        if new_folder:
            _fsync_dir(root)
        self.size = 0

    def append(self, frames: bytes) -> None:
        """Append `frames` (not yet durable: see `sync`)."""
        view = memoryview(frames)
        while view:
            view = view[os.write(self.fd, view) :]
        self.size += len(frames)

    def sync(self) -> None:
        """Make everything appended so far durable (raises OSError)."""
        os.fdatasync(self.fd)

    def close(self) -> None:
        os.close(self.fd)


def retire(paths: Sequence[Path], folders: set[str]) -> None:
    """Sync the file system the objects were published to, then delete their segments."""
    if folders:
        sync_folders(folders)
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def recover(store: LocalStore) -> int:
    """Publish every object the segments a crash left behind hold; return how many.

    Each object is written again whole (replacing what a power loss may have left of it),
    the file system is synced, and only then are the segments deleted. A segment still locked
    by a live committer (another receiver on the same folder) is left alone.
    """
    folder = store.root / LOG_FOLDER
    if not folder.is_dir():
        return 0
    recovered = 0
    done: list[Path] = []
    folders: set[str] = set()
    locks: list[int] = []
    try:
        for path in sorted(folder.glob(f"*{_SUFFIX}")):
            fd = os.open(path, os.O_RDONLY)
            locks.append(fd)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue
            group = store.stage(list(decode(path.read_bytes())))
            store.publish(group)
            for error in group.errors:
                # An invalid key was refused when it came (never acknowledged); any other
                # failure leaves the segment for the next start.
                if isinstance(error, StoreUnavailable):
                    raise error
            recovered += len(group.staged)
            folders |= group.folders
            done.append(path)
        if done:
            sync_folders(folders | {str(folder)})
        for path in done:
            path.unlink()
    finally:
        for fd in locks:
            os.close(fd)
    return recovered


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
