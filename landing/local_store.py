"""The object store as a local folder: for development, tests and single-host deployments.

Each object is two files: `<key>.meta.json` (written first) and `<key>` (the body). Both are written
to a temporary file in the same folder, fsynced and renamed into place, and the folder is fsynced,
so the body's appearance is the commit point: a key listed or read always has its metadata.
"""

from __future__ import annotations

import os
import re
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote, urlsplit

from landing.store import (
    LANDING_URL_VARIABLE,
    ObjectMeta,
    ObjectNotFound,
    StoreError,
    StoreUnavailable,
    probe_round_trip,
)

META_SUFFIX = ".meta.json"
_TMP_SUFFIX = ".tmp"
_SEGMENT_RE = re.compile(r"^[A-Za-z0-9_=+@,-][A-Za-z0-9._=+@,-]*$")


class LocalStore:
    """An ObjectStore over a folder; keys are relative paths with `/` separators.

    Unlike S3, a key cannot also be a folder of other keys (`a` and `a/b`); landed keys never are.
    """

    def __init__(self, root: Path) -> None:
        if not root.is_absolute():
            raise ValueError(f"the local store root must be an absolute path, found {root}")
        self.root = root
        self.url = root.as_uri()
        # Reads from a folder are CPU-bound under the GIL: threads only add switching (measured
        # 116 us per object with one thread, 200 us with 16).
        self.read_concurrency = 1

    @classmethod
    def from_url(cls, url: str) -> LocalStore:
        """A store for `file:///absolute/folder` (ValueError names BIOBRIDGE_LANDING_URL)."""
        parts = urlsplit(url)
        if parts.netloc not in ("", "localhost") or parts.query or parts.fragment:
            raise ValueError(
                f"{LANDING_URL_VARIABLE} must look like file:///absolute/folder "
                "(no host, query or fragment)"
            )
        path = Path(unquote(parts.path))
        if not path.is_absolute() or not parts.path:
            raise ValueError(f"{LANDING_URL_VARIABLE} must name an absolute folder, found {path}")
        return cls(path)

    def sweep_temp_files(self, *, older_than_s: float) -> int:
        """Delete temp files a killed writer left behind (never visible as objects); count them.

        Only files older than any write in flight can be (the receiver's ack deadline bounds it).
        """
        cutoff = time.time() - older_than_s
        removed = 0
        for tmp in self.root.rglob(f".*{_TMP_SUFFIX}"):
            try:
                if tmp.is_file() and tmp.stat().st_mtime < cutoff:
                    tmp.unlink()
                    removed += 1
            except FileNotFoundError:
                continue
        return removed

    def put(self, key: str, body: bytes, meta: ObjectMeta) -> None:
        """Write metadata, then the body; durable when it returns. OSError → StoreUnavailable."""
        path = self._path(key)
        try:
            self._make_dirs(path.parent)
            _write_atomic(path.with_name(path.name + META_SUFFIX), meta.to_json())
            _write_atomic(path, body)
        except OSError as exc:
            raise StoreUnavailable(f"cannot write {key!r} under {self.root}: {exc}") from exc

    def get(self, key: str) -> tuple[bytes, ObjectMeta]:
        """The exact stored bytes and their metadata."""
        path = self._path(key)
        try:
            body = path.read_bytes()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError) as exc:
            raise ObjectNotFound(f"no object {key!r} in {self.url}") from exc
        except OSError as exc:
            raise StoreUnavailable(f"cannot read {key!r} under {self.root}: {exc}") from exc
        try:
            raw_meta = path.with_name(path.name + META_SUFFIX).read_bytes()
        except OSError as exc:
            raise StoreError(f"object {key!r} in {self.url} has no readable metadata") from exc
        return body, ObjectMeta.from_json(raw_meta)

    def list_keys(self, prefix: str, *, start_after: str | None = None) -> Iterator[str]:
        """Keys under `prefix` in lexical order, streamed; sidecars and temp files are skipped."""
        base, _, _ = prefix.rpartition("/")
        if base and not all(_SEGMENT_RE.match(s) for s in base.split("/")):
            return  # no stored key can have this prefix (and it must not leave the root)
        start_dir = self.root / base if base else self.root
        rel = f"{base}/" if base else ""
        yield from _walk(start_dir, rel, prefix, start_after or "")

    def delete(self, key: str) -> None:
        """Remove the body (the commit point) first, then its metadata."""
        path = self._path(key)
        try:
            path.unlink(missing_ok=True)
            path.with_name(path.name + META_SUFFIX).unlink(missing_ok=True)
        except OSError as exc:
            raise StoreUnavailable(f"cannot delete {key!r} under {self.root}: {exc}") from exc

    def probe(self) -> None:
        """Write, read back and delete a probe object."""
        probe_round_trip(self)

    def _path(self, key: str) -> Path:
        segments = key.split("/")
        if key.endswith((META_SUFFIX, _TMP_SUFFIX)) or not all(
            _SEGMENT_RE.match(s) for s in segments
        ):
            raise StoreError(
                f"invalid object key {key!r}: expected '/'-separated segments of "
                f"[A-Za-z0-9._=+@,-] not starting with '.', not ending in {META_SUFFIX}"
            )
        return self.root.joinpath(*segments)

    def _make_dirs(self, folder: Path) -> None:
        """Create missing folders, fsyncing each parent so the new entries are durable."""
        missing: list[Path] = []
        cur = folder
        while not cur.is_dir() and cur != cur.parent:
            missing.append(cur)
            cur = cur.parent
        for d in reversed(missing):
            try:
                d.mkdir()
            except FileExistsError:
                if not d.is_dir():
                    raise
                continue
            _fsync_dir(d.parent)


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}{_TMP_SUFFIX}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _walk(folder: Path, rel: str, prefix: str, start_after: str) -> Iterator[str]:
    """Yield keys under `folder` (whose key prefix is `rel`) in lexical order.

    A folder's keys all start with `name/`, so sorting entries by `name` for files and `name/` for
    folders gives the lexical order of the full keys without collecting them first.
    """
    try:
        entries = list(os.scandir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return
    except OSError as exc:
        raise StoreUnavailable(f"cannot list {folder}: {exc}") from exc
    named = []
    for e in entries:
        if e.name.startswith(".") or e.name.endswith(META_SUFFIX):
            continue
        is_dir = e.is_dir(follow_symlinks=False)
        named.append((rel + e.name + ("/" if is_dir else ""), is_dir, e))
    named.sort(key=lambda item: item[0])
    for key, is_dir, entry in named:
        if is_dir:
            if not (key.startswith(prefix) or prefix.startswith(key)):
                continue
            if start_after >= key and not start_after.startswith(key):
                continue  # every key in this folder sorts before start_after
            yield from _walk(Path(entry.path), key, prefix, start_after)
        elif key.startswith(prefix) and key > start_after:
            yield key
