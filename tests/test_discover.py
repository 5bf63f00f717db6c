"""Discovery lists only recent partitions, yet never misses an object that lands late."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from landing.keys import parse_key
from landing.store import ObjectMeta, ObjectStore, open_store
from tasks.discover import SETTLE, discover, get_cursor, listing_plan
from tests.helpers import land as land_body
from warehouse.ledger import parse_discovered
from warehouse.postgres import connect

T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def land(store: ObjectStore, vendor: str, at: datetime) -> str:
    body = b'{"user_id": "u", "timestamp": "2026-11-30T00:00:00Z", "data": {"steps": 1}}'
    return land_body(store, vendor, body, at=at)


def test_listing_plan_covers_the_window_from_the_cursor() -> None:
    plan = listing_plan("oura", start=T0 - timedelta(minutes=90), end=T0)
    assert [p for p, _ in plan] == [
        "raw/oura/dt=2026-11-30/hour=10/",
        "raw/oura/dt=2026-11-30/hour=11/",
        "raw/oura/dt=2026-11-30/hour=12/",
    ]
    assert plan[0][1] == "raw/oura/dt=2026-11-30/hour=10/20261130T103000000000Z"
    assert listing_plan("oura", start=None, end=T0) == [("raw/oura/", None)]


def test_late_landing_within_the_settle_window_is_found(pg_url: str, tmp_path: Path) -> None:
    store = open_store((tmp_path / "landing").as_uri())
    first = land(store, "garmin", T0 - timedelta(hours=30))
    with connect(pg_url) as conn:
        assert discover(conn, store, vendors=["garmin"], now=T0) == {"garmin": 1}
        # Received before the cursor moved, but its write finished only now.
        late = land(store, "garmin", T0 - SETTLE / 2)
        fresh = land(store, "garmin", T0 + timedelta(minutes=1))
        assert discover(conn, store, vendors=["garmin"], now=T0 + timedelta(minutes=2)) == {
            "garmin": 2
        }
        # Behind the cursor (a receiver whose clock is behind): the incremental listing never
        # looks there, the sweep of the whole prefix does.
        lost = land(store, "garmin", T0 - 2 * SETTLE)
        assert discover(
            conn, store, vendors=["garmin"], now=T0 + timedelta(minutes=3), sweep_keys=1
        ) == {"garmin": 0}
        assert discover(conn, store, vendors=["garmin"], now=T0 + timedelta(minutes=4)) == {
            "garmin": 1
        }
        assert discover(conn, store, vendors=["garmin"], window=(None, None)) == {"garmin": 0}
        with conn.cursor() as cur:
            cur.execute("SELECT object_key FROM biobridge.landed_files ORDER BY 1")
            keys = [k for (k,) in cur.fetchall()]
    assert keys == sorted([first, late, fresh, lost])


def test_a_stray_object_under_raw_is_ignored_not_fatal(pg_url: str, tmp_path: Path) -> None:
    store = open_store((tmp_path / "landing").as_uri())
    ours = land(store, "oura", T0)
    body = b"{}"
    store.put(
        "raw/oura/dt=2026-11-30/hour=12/copied-by-hand.json",
        body,
        ObjectMeta.of_body(
            body,
            received_at=T0,
            vendor="oura",
            content_type="application/json",
            delivery_id="d",
        ),
    )
    with connect(pg_url) as conn:
        assert discover(conn, store, vendors=["oura"], window=(None, None)) == {"oura": 1}
        with conn.cursor() as cur:
            cur.execute("SELECT object_key FROM biobridge.landed_files")
            assert cur.fetchall() == [(ours,)]


def test_a_stopped_discovery_keeps_what_it_recorded_and_leaves_the_cursor(
    pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run that stops while loading stops its discovery at the next chunk: the chunks listed
    so far stay in the ledger (they load on the next run), the cursor does not move past keys
    never listed, and the next run finds the rest."""
    monkeypatch.setattr("tasks.discover.CHUNK", 1)
    store = open_store((tmp_path / "landing").as_uri())
    keys = [land(store, "garmin", T0 - timedelta(hours=3, minutes=n)) for n in range(3)]
    asked = 0

    def stop_after_first_chunk() -> bool:
        nonlocal asked
        asked += 1
        return asked > 1  # asked once before the vendor, then after each chunk

    with connect(pg_url) as conn:
        found = discover(conn, store, vendors=["garmin"], now=T0, stop=stop_after_first_chunk)
        assert found == {"garmin": 1}
        assert get_cursor(conn, "garmin") is None
        assert discover(conn, store, vendors=["garmin"], now=T0) == {"garmin": 2}
        with conn.cursor() as cur:
            cur.execute("SELECT object_key FROM biobridge.landed_files ORDER BY 1")
            assert [k for (k,) in cur.fetchall()] == sorted(keys)


def test_keys_are_parsed_in_bulk_exactly_as_one_by_one() -> None:
    good = "raw/oura/dt=2026-12-03/hour=06/20261203T064512123456Z-0123456789abcdef.json"
    form = "raw/withings/dt=2026-12-03/hour=06/20261203T064512000001Z-fedcba9876543210.form"
    keys = [
        good,
        form,
        good.replace("20261203T", "20261303T"),  # month 13
        good.replace("T064512", "T066012"),  # second 60
        good.replace("raw/oura/", "raw/acme/"),  # not a vendor of ours
        good + "\n",  # a trailing newline (`$` of a regex lets it through)
        good.replace("2026", "\u0662\u0660\u0662\u0666", 1),  # non-ASCII digits
        "raw/oura/notes.txt",
        "",
    ]

    table, strays = parse_discovered(keys)

    assert table.column("object_key").to_pylist() == [good, form]
    assert table.column("vendor").to_pylist() == ["oura", "withings"]
    assert table.column("received_at").to_pylist() == [
        parse_key(good).received_at,
        parse_key(form).received_at,
    ]
    assert strays == keys[2:]
    for key in strays:
        with pytest.raises(ValueError, match=r"not a landed object key|does not match|must be"):
            parse_key(key)
