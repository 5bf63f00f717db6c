"""Group commit on the local store: concurrent puts share their syncs, each waiter gets its own
outcome, a failed group acknowledges nobody, the materializer turns every acknowledged record
into a whole object (also after it or the syncer dies), the backlog is bounded and counted, and
the fsync fallback keeps the same contract."""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

import landing.commit_log as commit_log
import landing.local_store as local_store
from landing.group_commit import GroupCommitter
from landing.keys import new_key
from landing.local_store import LocalStore
from landing.store import ObjectMeta, StoreError, StoreUnavailable


def meta_for(body: bytes) -> ObjectMeta:
    return ObjectMeta(
        received_at=datetime.now(UTC),
        vendor="oura",
        content_type="application/json",
        sha256=hashlib.sha256(body).hexdigest(),
        size=len(body),
        delivery_id="test-only",
        delivery_id_source="receiver",
        signature_verified=False,
    )


def fields_for(body: bytes) -> dict[str, object]:
    """What the receiver hands the committer: the metadata but the body's digest and size."""
    d = orjson.loads(meta_for(body).to_json())
    del d["sha256"], d["size"]
    return d  # type: ignore[no-any-return]


async def put_all(
    committer: GroupCommitter, items: list[tuple[str, bytes]], *, drain: bool = True
) -> list[object]:
    outcomes = await asyncio.gather(
        *(committer.put(key, body, fields_for(body)) for key, body in items),
        return_exceptions=True,
    )
    if drain:
        await committer.drain()  # acknowledged when logged: wait until they are objects
    return outcomes


def test_concurrent_puts_share_groups_and_all_land_whole(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "landing")
    committer = GroupCommitter(store)
    items = [(new_key("oura", datetime.now(UTC)), b'{"n":%d}' % i) for i in range(300)]
    big = (new_key("oura", datetime.now(UTC)), b"[" + b"1," * 200_000 + b"1]")  # thread-staged
    outcomes = asyncio.run(put_all(committer, [*items, big]))

    assert outcomes == [None] * 301
    assert committer.objects == 301
    assert committer.groups < 301 / 4, committer.groups  # shared, not one round per object
    for key, body in [*items, big]:
        got, meta = store.get(key)
        assert got == body and meta.sha256 == hashlib.sha256(body).hexdigest()
    assert sorted(store.list_keys("raw/")) == sorted(k for k, _ in [*items, big])
    assert not list(store.root.rglob(".*.tmp"))
    assert commit_log.backlog(store).records == 0
    committer.close()  # the materializer retires the whole log, then exits
    assert not list((store.root / commit_log.LOG_FOLDER).iterdir())


def test_each_waiter_gets_its_own_error_and_the_others_land(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "landing")
    committer = GroupCommitter(store)
    good = [(new_key("oura", datetime.now(UTC)), b"{}") for _ in range(5)]
    bad = ("raw/../escape", b"{}")
    outcomes = asyncio.run(put_all(committer, [*good[:2], bad, *good[2:]]))

    # refused before it is logged: whatever is acknowledged can become an object
    assert isinstance(outcomes[2], StoreError) and "invalid object key" in str(outcomes[2])
    assert outcomes[:2] + outcomes[3:] == [None] * 5
    assert sorted(store.list_keys("raw/")) == sorted(k for k, _ in good)


def test_a_group_that_cannot_be_written_acknowledges_nobody(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_bytes(b"not a folder")
    committer = GroupCommitter(LocalStore(tmp_path / "a-file" / "landing"))
    items = [(new_key("oura", datetime.now(UTC)), b"{}") for _ in range(10)]
    outcomes = asyncio.run(put_all(committer, items))
    assert all(isinstance(o, StoreUnavailable) for o in outcomes), outcomes


def test_without_syncfs_puts_fsync_each_file_with_the_same_contract(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(local_store, "_SYNCFS", None)  # as on a system without syncfs(2)
    store = LocalStore(tmp_path / "landing")
    items = [(new_key("oura", datetime.now(UTC)), b'{"n":%d}' % i) for i in range(20)]
    committer = GroupCommitter(store)
    assert asyncio.run(put_all(committer, items)) == [None] * 20
    for key, body in items:
        assert store.get(key)[0] == body
    key = items[0][0]
    store.put(key, b'{"again":1}', meta_for(b'{"again":1}'))  # a key put again: replaced whole
    assert store.get(key) == (b'{"again":1}', store.get(key)[1])
    assert store.get(key)[1].size == len(b'{"again":1}')


def test_orphan_metadata_is_swept_only_when_old(tmp_path: Path) -> None:
    import os
    import time

    store = LocalStore(tmp_path)
    key = new_key("oura", datetime.now(UTC))
    store.put(key, b"{}", meta_for(b"{}"))
    folder = tmp_path / key.rpartition("/")[0]
    old, new = folder / "a.json.meta.json", folder / "b.json.meta.json"
    for f in (old, new):
        f.write_bytes(b'{"cut')
    hour_ago = time.time() - 3600
    os.utime(old, (hour_ago, hour_ago))
    os.utime(folder / (key.rpartition("/")[2] + ".meta.json"), (hour_ago, hour_ago))

    assert store.sweep_orphan_metas(older_than_s=600) == 1
    assert not old.exists() and new.exists()
    assert store.get(key)[0] == b"{}"  # an old metadata file with its body stays


def test_recovery_publishes_what_the_log_holds_and_drops_a_torn_frame(tmp_path: Path) -> None:
    """After a power loss: a body renamed into place but never written back reads as
    unavailable (never as an object), and the log puts it back whole at the next start."""
    store = LocalStore(tmp_path)
    items = [(new_key("oura", datetime.now(UTC)), b'{"n":%d}' % i) for i in range(3)]
    store.put(items[0][0], items[0][1], meta_for(items[0][1]))
    body_path = tmp_path / items[0][0]
    body_path.write_bytes(b"")  # what a power loss can leave of an unsynced body
    with pytest.raises(StoreUnavailable, match="restart the receiver"):
        store.get(items[0][0])
    frames = commit_log.encode([(k, b, meta_for(b).to_json()) for k, b in items])
    torn = commit_log.encode([(new_key("oura", datetime.now(UTC)), b"{}", b"{}")])[:-3]
    (tmp_path / commit_log.LOG_FOLDER).mkdir()
    segment = tmp_path / commit_log.LOG_FOLDER / "123-000000.log"
    segment.write_bytes(frames + torn)

    assert commit_log.recover(store) == 3
    for key, body in items:
        assert store.get(key)[0] == body
    assert sorted(store.list_keys("raw/")) == sorted(k for k, _ in items)  # not the torn one
    assert not segment.exists()


def test_recovery_leaves_the_segment_of_a_live_committer_alone(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    live = commit_log.Segment(tmp_path)  # locked while its committer writes it
    key = new_key("oura", datetime.now(UTC))
    live.append(commit_log.encode([(key, b"{}", meta_for(b"{}").to_json())]))
    try:
        assert commit_log.recover(store) == 0
        assert live.path.exists() and not list(store.list_keys("raw/"))
    finally:
        live.close()
    assert commit_log.recover(store) == 1  # its committer is gone: now it is replayed
    assert store.get(key)[0] == b"{}"


def test_a_syncer_that_dies_leaves_no_request_waiting(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "landing")
    committer = GroupCommitter(store)

    async def scenario() -> tuple[object, object]:
        await committer.put(new_key("oura", datetime.now(UTC)), b"{}", fields_for(b"{}"))
        (link,) = committer._links.values()
        os.kill(link.syncer[0], signal.SIGKILL)
        os.waitpid(link.syncer[0], 0)
        outcomes = []
        for _ in range(2):
            put = committer.put(new_key("oura", datetime.now(UTC)), b"{}", fields_for(b"{}"))
            outcomes += await asyncio.gather(put, return_exceptions=True)
        await committer.drain()
        return outcomes[0], outcomes[1]

    first, second = asyncio.run(asyncio.wait_for(scenario(), 30))
    assert first is None or isinstance(first, StoreUnavailable), first  # died under it: 503
    assert second is None  # the next put started another syncer
    assert len(list(store.list_keys("raw/"))) >= 2 + (first is None)


def test_a_materializer_that_dies_is_replaced_and_every_acknowledged_record_lands(
    tmp_path: Path,
) -> None:
    store = LocalStore(tmp_path / "landing")
    committer = GroupCommitter(store)
    items = [(new_key("oura", datetime.now(UTC)), b'{"n":%d}' % i) for i in range(200)]

    async def scenario() -> list[object]:
        first = await put_all(committer, items[:100], drain=False)
        (link,) = committer._links.values()
        os.kill(link.materializer[0], signal.SIGKILL)  # records acknowledged, maybe unpublished
        second = await put_all(committer, items[100:])
        assert link.materializer[0] != 0
        return first + second

    assert asyncio.run(asyncio.wait_for(scenario(), 60)) == [None] * 200
    for key, body in items:
        assert store.get(key)[0] == body
    assert commit_log.backlog(store).records == 0


def test_the_backlog_is_counted_bounded_and_drained(tmp_path: Path) -> None:
    """A stopped materializer: what is acknowledged shows in the backlog, new puts are refused
    once the oldest record is older than the bound, and all lands once it runs again."""
    store = LocalStore(tmp_path / "landing")
    committer = GroupCommitter(store, max_lag_s=0.2)
    items = [(new_key("oura", datetime.now(UTC)), b'{"n":%d}' % i) for i in range(20)]

    async def scenario() -> tuple[list[object], object, commit_log.Backlog]:
        await committer.put(items[0][0], items[0][1], fields_for(items[0][1]))
        await committer.drain()
        (link,) = committer._links.values()
        os.kill(link.materializer[0], signal.SIGSTOP)
        try:
            acked = await put_all(committer, items[1:], drain=False)
            pending = commit_log.backlog(store)
            await asyncio.sleep(0.3)
            late = await asyncio.gather(
                committer.put(new_key("oura", datetime.now(UTC)), b"{}", fields_for(b"{}")),
                return_exceptions=True,
            )
        finally:
            os.kill(link.materializer[0], signal.SIGCONT)
        await committer.drain()
        return acked, late[0], pending

    acked, late, pending = asyncio.run(asyncio.wait_for(scenario(), 60))
    assert acked == [None] * 19
    assert (pending.records, pending.bytes) == (19, sum(len(b) for _, b in items[1:]))
    assert pending.oldest is not None and pending.segments >= 1
    assert isinstance(late, StoreUnavailable) and "ahead of its objects" in str(late)
    assert commit_log.backlog(store).records == 0
    for key, body in items:
        assert store.get(key)[0] == body


def test_with_ack_visible_a_put_returns_once_its_object_is_readable(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "landing")
    committer = GroupCommitter(store, ack_visible=True)
    items = [(new_key("oura", datetime.now(UTC)), b'{"n":%d}' % i) for i in range(50)]
    assert asyncio.run(put_all(committer, items, drain=False)) == [None] * 50
    for key, body in items:
        assert store.get(key)[0] == body


def test_recovery_completes_the_metadata_the_receiver_logged(tmp_path: Path) -> None:
    """The receiver logs the metadata without the digest and size: recovery computes them."""
    store = LocalStore(tmp_path)
    key, body = new_key("oura", datetime.now(UTC)), b'{"a":1}'
    fields = fields_for(body)
    (tmp_path / commit_log.LOG_FOLDER).mkdir()
    segment = tmp_path / commit_log.LOG_FOLDER / "123-000000.log"
    segment.write_bytes(commit_log.encode([(key, body, orjson.dumps(fields))]))
    assert commit_log.backlog(store).records == 1
    assert commit_log.recover(store) == 1
    got, meta = store.get(key)
    assert got == body and meta == ObjectMeta.of_fields(body, fields)
    assert (meta.size, meta.sha256) == (len(body), hashlib.sha256(body).hexdigest())
    assert commit_log.backlog(store) == commit_log.Backlog(0, 0, None, 0)


def test_records_the_materializer_cannot_write_stay_logged_until_it_can(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full disk while materializing: the acknowledged records are never skipped (their
    segment is not retired); they become objects once writing works again."""
    full = tmp_path / "disk-full"
    full.touch()
    write_temp = local_store._write_temp

    def failing(folder: str, name: str, data: bytes, *, fsync: bool) -> str:
        if full.exists():  # checked in the materializer process (forked with this patch)
            raise OSError(28, "No space left on device")
        return write_temp(folder, name, data, fsync=fsync)

    monkeypatch.setattr(local_store, "_write_temp", failing)
    store = LocalStore(tmp_path / "landing")
    committer = GroupCommitter(store)
    items = [(new_key("oura", datetime.now(UTC)), b'{"n":%d}' % i) for i in range(30)]

    async def scenario() -> tuple[list[object], commit_log.Backlog]:
        acked = await put_all(committer, items, drain=False)  # logged: acknowledged
        await asyncio.sleep(1.5)  # the materializer tries, fails, waits, tries again
        stuck = commit_log.backlog(store)
        full.unlink()  # space again
        await committer.drain()
        return acked, stuck

    acked, stuck = asyncio.run(asyncio.wait_for(scenario(), 60))
    assert acked == [None] * 30
    assert stuck.records == 30  # pending and counted, not lost
    for key, body in items:
        assert store.get(key)[0] == body
    committer.close()
    assert not list((store.root / commit_log.LOG_FOLDER).glob("*.log"))


def test_a_segment_closed_while_its_syncs_run_is_retired_only_after_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every flush starts a new segment and every fdatasync is slow: the old segment is closed
    while groups written to it still sync. It must not be retired (deleted) before they are
    published, or their acknowledged records would be gone."""
    import time

    import landing.group_commit as group_commit

    fdatasync = os.fdatasync

    def slow(fd: int) -> None:  # in the syncer process (forked with this patch)
        time.sleep(0.05)
        fdatasync(fd)

    monkeypatch.setattr(os, "fdatasync", slow)
    monkeypatch.setattr(group_commit, "_ROTATE_S", 0.0)
    store = LocalStore(tmp_path / "landing")
    committer = GroupCommitter(store)
    items = [(new_key("oura", datetime.now(UTC)), b'{"n":%d}' % i) for i in range(200)]

    async def scenario() -> list[object]:
        waves = []
        for wave in range(0, 200, 10):  # a few loop turns apart: groups overlap their syncs
            waves.append(
                asyncio.ensure_future(put_all(committer, items[wave : wave + 10], drain=False))
            )
            await asyncio.sleep(0.005)
        outcomes: list[object] = []
        for done in await asyncio.gather(*waves):
            outcomes += done
        await committer.drain()
        return outcomes

    assert asyncio.run(asyncio.wait_for(scenario(), 60)) == [None] * 200
    assert committer.groups > 3  # several segments, closed while others synced
    for key, body in items:
        assert store.get(key)[0] == body
