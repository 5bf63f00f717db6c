"""The receiver's log: objects appended to a segment file, made durable by one fdatasync a group.

Each worker process appends every object of a group to its own segment file in `<landing>/.wal/`
(a dot-folder: never listed as objects) and syncs that one file, not the whole file system; the
group is acknowledged then. Its materializer process (`landing/materializer.py`) turns the
records into objects afterwards; once the file system has been synced after the objects were
published, the segment is no longer needed and is deleted. `recover` replays what a crash left
behind and `backlog` counts the records that are not objects yet (`biobridge verify`, health).
Frames are checksummed, so a frame cut short by a crash (never acknowledged) is recognised and
dropped.

Frame, little-endian: `crc32:u32 key:u32 meta:u32 body:u32` (the three lengths), then the key,
the metadata JSON and the body; the CRC-32 covers the lengths and the three parts. The metadata
is `ObjectMeta.to_json`'s, or the same without `sha256` and `size` (the receiver leaves them to
the materializer: `complete_meta` adds them from the body).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import itertools
import os
import struct
import time
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from pathlib import Path

import orjson

from landing.local_store import LocalStore, sync_folders
from landing.store import ObjectMeta, StoreError, StoreUnavailable

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
    for _, item in decode_ends(data):
        yield item


def decode_ends(data: bytes) -> Iterator[tuple[int, Item]]:
    """(offset just past the frame, frame) of each whole frame, up to the first torn one."""
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
        yield end, (key, bytes(view[start + nkey + nmeta : end]), meta)
        pos = end


def complete_meta(meta: bytes, body: bytes) -> bytes:
    """The object's metadata JSON: `meta` with the body's `sha256` and `size` (computed here).

    The bytes `ObjectMeta.to_json` gives for it. What the receiver logs has every field and a
    `received_at` in `isoformat`'s own form: then it is serialised directly (the round trip
    through ObjectMeta cost ~4x as much, a fifth of the materializer's Python time per object);
    anything else (older or newer fields, another time format) takes the round trip."""
    d = orjson.loads(meta)
    d["sha256"] = hashlib.sha256(body).hexdigest()
    d["size"] = len(body)
    at = d.get("received_at")
    if d.keys() == _META_KEYS and isinstance(at, str) and _iso(at) == at:
        fast = orjson.dumps(d, option=orjson.OPT_SORT_KEYS)
        if fast.isascii() and b"\x7f" not in fast:  # what to_json requires of its fast form
            return fast
    return ObjectMeta.from_json(orjson.dumps(d)).to_json()


def _iso(at: str) -> str | None:
    try:
        return datetime.fromisoformat(at).isoformat()
    except ValueError:
        return None


_META_KEYS = {f.name for f in fields(ObjectMeta)}


def materialize(store: LocalStore, records: Sequence[Item]) -> Materialized:
    """Write `records` as objects (metadata first, the body renamed into place last); no sync."""
    group = store.stage([(key, body, complete_meta(meta, body)) for key, body, meta in records])
    store.publish(group)
    return Materialized(len(group.staged), group.folders, group.errors)


@dataclass
class Materialized:
    """What `materialize` did: objects published, folders touched, one error (or None) each."""

    published: int
    folders: set[str]
    errors: list[StoreError | None]


def segment_path(root: Path, pid: int, seq: int) -> Path:
    """Where worker `pid` writes its segment number `seq`."""
    return root / LOG_FOLDER / f"{pid}-{seq:06d}{_SUFFIX}"


class Segment:
    """One worker's segment: appended to and synced, then retired once materialized."""

    def __init__(self, root: Path, *, sync_folder: bool = True) -> None:
        """Create and lock a new segment; `sync_folder=False` leaves making its name durable
        (`sync_folder_of`) to whoever syncs it first (the receiver's syncer process)."""
        folder = root / LOG_FOLDER
        new_folder = not folder.is_dir()
        folder.mkdir(parents=True, exist_ok=True)
        while True:
            self.seq = next(_SEGMENT_SEQ)
            self.path = segment_path(root, os.getpid(), self.seq)
            self.fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
            # Held while the segment is written: `recover` (another process) skips it. Never
            # wait for it: `recover` holding it means it took the empty file and will delete it.
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(self.fd)
                continue
            if os.fstat(self.fd).st_nlink:  # not recovered and deleted before we locked it
                break
            os.close(self.fd)
        if sync_folder or new_folder:
            sync_folder_of(self.path)  # the name is durable before anything in it is acknowledged
        self.size = 0
        self.opened = time.monotonic()

    def append(self, frames: bytes | bytearray) -> None:
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

    `biobridge receiver` runs it before serving, and each materializer when it starts (the
    segments of a worker that died). Each object is written again whole (replacing what a
    power loss may have left of it), the file system is synced, and only then are the segments
    deleted. A segment still locked by a live worker (of this or another receiver on the same
    folder) is left alone.
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
            group = materialize(store, list(decode(path.read_bytes())))
            for error in group.errors:
                # An invalid key was refused when it came (never acknowledged); any other
                # failure leaves the segment for the next start.
                if isinstance(error, StoreUnavailable):
                    raise error
            recovered += group.published
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


@dataclass(frozen=True)
class Backlog:
    """Records acknowledged (logged) that are not objects yet: what the materializer owes."""

    records: int
    bytes: int
    oldest: datetime | None  # receipt time of the oldest such record
    segments: int  # segment files in the log (materialized or not)

    def oldest_age_s(self, now: datetime | None = None) -> float | None:
        if self.oldest is None:
            return None
        return ((now or datetime.now(UTC)) - self.oldest).total_seconds()


def backlog(store: LocalStore) -> Backlog:
    """Count the logged records whose object does not exist yet (no lock: a snapshot)."""
    folder = store.root / LOG_FOLDER
    records = size = segments = 0
    oldest: datetime | None = None
    if not folder.is_dir():
        return Backlog(0, 0, None, 0)
    for path in sorted(folder.glob(f"*{_SUFFIX}")):
        try:
            data = path.read_bytes()
        except FileNotFoundError:  # retired meanwhile
            continue
        segments += 1
        for key, body, meta in decode(data):
            try:
                if os.path.exists(store.root / key):
                    continue
            except (OSError, ValueError):
                continue
            records += 1
            size += len(body)
            try:
                at = datetime.fromisoformat(orjson.loads(meta)["received_at"])
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                at = datetime.fromtimestamp(time.time(), UTC)
            oldest = at if oldest is None or at < oldest else oldest
    return Backlog(records, size, oldest, segments)


def sync_folder_of(segment: Path) -> None:
    """Make a segment's name durable: its folder (and the landing root, which holds the folder)."""
    _fsync_dir(segment.parent)
    _fsync_dir(segment.parent.parent)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
