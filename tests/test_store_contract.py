"""The ObjectStore contract, run against both backends (a folder and S3 via moto)."""

from __future__ import annotations

import hashlib
import random
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from landing.keys import PROBE_PREFIX, KeyParts, new_key, parse_key, partition_prefix
from landing.local_store import LocalStore
from landing.settings import Settings
from landing.store import ObjectMeta, ObjectNotFound, ObjectStore, StoreError, open_store

T0 = datetime(2025, 7, 28, 19, 28, 15, 123456, tzinfo=UTC)


def meta_for(body: bytes, **changes: object) -> ObjectMeta:
    fields: dict[str, object] = {
        "received_at": T0,
        "vendor": "oura",
        "content_type": "application/json",
        "sha256": hashlib.sha256(body).hexdigest(),
        "size": len(body),
        "delivery_id": "d-1",
        "delivery_id_source": "receiver",
        "signature_verified": False,
        "headers": {"user-agent": "Gerät/1.0 ☃ \u00ff", "x-oura-timestamp": "1753730895"},
        "context": {"user_id": "athlete_élite"},
    }
    fields.update(changes)
    return ObjectMeta(**fields)  # type: ignore[arg-type]


def test_put_get_round_trip_is_byte_identical(store: ObjectStore) -> None:
    body = bytes(range(256)) + "héllo ☃\r\n\x00".encode() + b"\xff\xfe"
    key = new_key("oura", T0)
    store.put(key, body, meta_for(body))

    got, meta = store.get(key)

    assert got == body
    assert meta == meta_for(body)
    assert meta.received_at.tzinfo is not None


def test_get_of_a_missing_key_raises_object_not_found(store: ObjectStore) -> None:
    with pytest.raises(ObjectNotFound):
        store.get(new_key("whoop", T0))


def test_get_many_returns_each_object_in_the_order_asked(store: ObjectStore) -> None:
    # More objects than the local store opens at once, one body larger than a single read.
    rng = random.Random(7)
    objects = {}
    for n in range(70):
        body = rng.randbytes(rng.choice([0, 1, 700, 5000]))
        key = new_key("oura", T0 + timedelta(seconds=n))
        store.put(key, body, meta_for(body, delivery_id=f"d-{n}"))
        objects[key] = body
    big = bytes(range(256)) * 5000  # 1.2 MiB
    big_key = new_key("garmin", T0)
    store.put(big_key, big, meta_for(big))
    objects[big_key] = big
    keys = list(objects)
    rng.shuffle(keys)

    got = store.get_many(keys)

    assert [body for body, _ in got] == [objects[k] for k in keys]
    assert [meta.sha256 for _, meta in got] == [
        hashlib.sha256(objects[k]).hexdigest() for k in keys
    ]
    assert store.get_many([]) == []


def test_local_get_many_of_a_missing_key_raises_and_closes_every_file(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    keys = [new_key("oura", T0 + timedelta(seconds=n)) for n in range(10)]
    for key in keys:
        store.put(key, b"{}", meta_for(b"{}"))
    missing = new_key("oura", T0 + timedelta(days=1))
    open_before = len(list(Path("/proc/self/fd").iterdir()))

    with pytest.raises(ObjectNotFound, match=missing):
        store.get_many([*keys[:5], missing, *keys[5:]])

    assert len(list(Path("/proc/self/fd").iterdir())) == open_before


def test_delete_removes_the_object(store: ObjectStore) -> None:
    key = new_key("garmin", T0)
    store.put(key, b"{}", meta_for(b"{}"))
    store.delete(key)
    with pytest.raises(ObjectNotFound):
        store.get(key)
    assert list(store.list_keys("raw/")) == []


def test_list_keys_is_lexical_and_honours_prefix_and_start_after(store: ObjectStore) -> None:
    keys = [new_key(v, T0 + timedelta(minutes=37 * i)) for i, v in enumerate(["oura"] * 5)]
    keys += [new_key("whoop", T0 + timedelta(hours=i)) for i in range(3)]
    keys += [new_key("withings", T0, ext="form")]
    # Where a folder walk and plain string order disagree ('-' < '.' < '/' < '0').
    keys += ["t/a-b", "t/a.b", "t/a/b", "t/a/c/d", "t/a0", "t/b"]
    for key in random.sample(keys, len(keys)):
        store.put(key, b"[]", meta_for(b"[]"))
    everything = sorted(keys)

    assert list(store.list_keys("")) == everything
    assert list(store.list_keys("t/")) == [k for k in everything if k.startswith("t/")]
    assert list(store.list_keys("t/a/")) == ["t/a/b", "t/a/c/d"]
    assert list(store.list_keys("raw/oura/")) == sorted(k for k in keys if "/oura/" in k)
    assert list(store.list_keys("raw/w")) == sorted(k for k in keys if k.startswith("raw/w"))
    assert list(store.list_keys("raw/nobody/")) == []
    for after in [everything[0], everything[4], "t/a.", "t/a/", "t/a/c", "raw/p", "zzz"]:
        expected = [k for k in everything if k > after]
        assert list(store.list_keys("", start_after=after)) == expected, after
    assert list(store.list_keys("t/", start_after="t/a/b")) == ["t/a/c/d", "t/a0", "t/b"]


def test_list_written_gives_the_stores_clock_not_the_keys(store: ObjectStore) -> None:
    # Keyed as a receiver whose clock is 15 min (and a year) behind wrote them.
    before = datetime.now(UTC) - timedelta(seconds=5)  # S3 has second resolution
    keys = sorted(new_key("oura", before - timedelta(minutes=m)) for m in (15, 60 * 24 * 365))
    for key in keys:
        store.put(key, b"{}", meta_for(b"{}"))
    after = datetime.now(UTC) + timedelta(seconds=5)
    written = list(store.list_written("raw/oura/"))
    assert [k for k, _ in written] == keys == list(store.list_keys("raw/oura/"))
    assert all(before <= at <= after for _, at in written), written
    assert list(store.list_written("raw/oura/", start_after=keys[0])) == written[1:]


def test_listing_shows_whole_objects_only(store: ObjectStore) -> None:
    key = new_key("polar", T0)
    store.put(key, b"{}", meta_for(b"{}"))
    if isinstance(store, LocalStore):  # leftovers of a crashed write, as a folder would hold them
        folder = store.root / key.rpartition("/")[0]
        (folder / ".orphan.json.0a1b2c.tmp").write_bytes(b"{")
        (folder / "orphan.json.meta.json").write_bytes(b"{}")
        assert (folder / (Path(key).name + ".meta.json")).exists()

    assert list(store.list_keys("")) == [key]


def test_probe_round_trips_and_leaves_nothing(store: ObjectStore) -> None:
    store.probe()
    assert list(store.list_keys(PROBE_PREFIX)) == []


def test_local_store_refuses_keys_outside_its_folder(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "landing")
    for key in ["../escape", "raw/../../x", "/abs", "raw//x", "raw/.hidden", "raw/x.meta.json"]:
        with pytest.raises(StoreError, match="invalid object key"):
            store.put(key, b"{}", meta_for(b"{}"))
    assert list(store.list_keys("../")) == []
    assert not (tmp_path / "escape").exists()


def test_s3_put_lands_body_and_metadata_in_one_object(
    bucket: str, settings: Settings, s3_admin: Any
) -> None:
    store = open_store(f"s3://{bucket}/some/prefix/", settings)
    key = new_key("whoop", T0)
    store.put(key, b'{"a":1}', meta_for(b'{"a":1}'))

    head = s3_admin.head_object(Bucket=bucket, Key=f"some/prefix/{key}")

    assert list(head["Metadata"]) == ["biobridge-meta"]
    assert ObjectMeta.from_json(head["Metadata"]["biobridge-meta"]) == meta_for(b'{"a":1}')
    assert head["ContentType"] == "application/octet-stream"


def test_s3_endpoint_also_comes_from_aws_endpoint_url(
    bucket: str, settings: Settings, monkeypatch: pytest.MonkeyPatch, aws_env: str
) -> None:
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3")
    monkeypatch.setenv("AWS_ENDPOINT_URL", aws_env)
    open_store(f"s3://{bucket}", settings).probe()


def test_s3_store_refuses_metadata_over_the_s3_limit(bucket: str, settings: Settings) -> None:
    store = open_store(f"s3://{bucket}", settings)
    big = meta_for(b"{}", headers={"x-big": "é" * 400})
    with pytest.raises(StoreError, match="S3 allows 2048"):
        store.put(new_key("oura", T0), b"{}", big)


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/x",
        "landing",
        "/abs/path/without/scheme",
        "file://otherhost/x",
        "file:relative",
        "s3://",
        "s3://Bad_Bucket/x",
        "s3://AKIAFAKE:hunter2@bucket-name/x",
        "s3://bucket-name/x?versionId=1",
    ],
)
def test_open_store_rejects_bad_urls_naming_the_variable(url: str, settings: Settings) -> None:
    with pytest.raises(ValueError, match="BIOBRIDGE_LANDING_URL") as info:
        open_store(url, settings)
    assert "hunter2" not in str(info.value)


def test_local_store_sweeps_only_old_temp_files(tmp_path: Path) -> None:
    import os
    import time

    from landing.local_store import LocalStore

    store = LocalStore(tmp_path)
    part = tmp_path / "raw" / "oura" / "dt=2026-11-30" / "hour=05"
    part.mkdir(parents=True)
    old = part / ".x.json.abc.tmp"
    new = part / ".y.json.def.tmp"
    for f in (old, new):
        f.write_bytes(b"partial")
    hour_ago = time.time() - 3600
    os.utime(old, (hour_ago, hour_ago))
    assert store.sweep_temp_files(older_than_s=600) == 1
    assert not old.exists() and new.exists()


@pytest.mark.parametrize(
    "at",
    [
        datetime(2025, 7, 10, 6, 41, 48, 0, tzinfo=UTC),  # no microseconds
        datetime(2025, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),
        datetime(2026, 1, 1, 1, 2, 3, 45, tzinfo=timezone(timedelta(hours=5))),  # not UTC
    ],
)
def test_new_key_is_the_partition_then_the_receipt_stamp(at: datetime) -> None:
    key = new_key("oura", at, ext="form")
    utc = at.astimezone(UTC)
    assert key.startswith(partition_prefix("oura", utc) + utc.strftime("%Y%m%dT%H%M%S%fZ-"))
    assert parse_key(key) == KeyParts(vendor="oura", received_at=utc, ext="form")
