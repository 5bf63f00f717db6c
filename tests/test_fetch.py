"""The fetch stage end to end: signed notifications over HTTP, users connected through the
connect flow, documents fetched from the fake vendor API (a real server), landed, loaded."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from deployments.fake_vendor_api import EXAMPLES
from ops.verify import verify
from tasks.runtime import landing_store
from tests import fetch_fixtures
from tests.fetch_fixtures import (
    OURA_USER,
    FetchSetup,
    example,
    oura_event,
    polar_sleep_event,
    whoop_event,
)
from warehouse.postgres import connect

fetch_setup = fetch_fixtures.fetch_setup

CONNECTED = {
    "oura": "alice",
    "whoop": "bob",
    "fitbit": "carol",
    "withings": "dave",
    "polar": "erin",
}
FETCHED_EXAMPLES = (
    "oura_daily_readiness",
    "oura_daily_sleep",
    "oura_daily_activity",
    "oura_sleep",
    "oura_heartrate",
    "oura_daily_spo2",
    "whoop_recovery",
    "whoop_sleep",
    "whoop_cycle",
    "whoop_workout",
    "fitbit_heart_rate_summary",
    "fitbit_hrv",
    "fitbit_temp_skin",
    "withings_measures",
    "polar_exercise",
    "polar_sleep",
)
ROWS = (
    'SELECT user_id, device_type, metric_type, value, unit, "timestamp" '
    "FROM public.biometric_events WHERE device_type = ANY($1::text[])"
)


def _key(row: dict[str, Any] | tuple[Any, ...]) -> tuple[Any, ...]:
    if isinstance(row, dict):
        user, device, metric = row["user_id"], row["device_type"], row["metric_type"]
        value, unit = row["value"], row["unit"]
        stamp = datetime.fromisoformat(row["timestamp"].replace("Z", "+00:00"))
    else:
        user, device, metric, value, unit, stamp = row
    return (str(user), device, metric, round(float(value), 6), unit, stamp.astimezone(UTC))


def expected_rows() -> set[tuple[Any, ...]]:
    rows: set[tuple[Any, ...]] = set()
    for name in FETCHED_EXAMPLES:
        rows |= {_key(r) for r in example(f"{name}.expected.json")["rows"]}
    return rows


def send_every_notification(s: FetchSetup) -> int:
    """The examples' notifications, and one per fetched example that has none."""
    sent = [
        ("oura", (EXAMPLES / "oura_webhook_event.json").read_bytes()),
        ("whoop", (EXAMPLES / "whoop_webhook_event.json").read_bytes()),
        ("fitbit", (EXAMPLES / "fitbit_notification.json").read_bytes()),
        ("withings", (EXAMPLES / "withings_measure_notify.txt").read_bytes()),
        ("polar", (EXAMPLES / "polar_exercise_event.json").read_bytes()),
        ("polar", (EXAMPLES / "polar_ping.json").read_bytes()),
        ("polar", polar_sleep_event(example("polar_sleep.json")["date"])),
        ("whoop", whoop_event("sleep", example("whoop_sleep.json")["id"])),
        ("whoop", whoop_event("workout", example("whoop_workout.json")["id"])),
    ]
    for data_type in ("daily_sleep", "daily_activity", "sleep", "daily_spo2"):
        sent.append(("oura", oura_event(data_type, example(f"oura_{data_type}.json")["id"])))
    return sum(s.notify(vendor, body).status_code == 202 for vendor, body in sent)


def fetch_counts(record: Any) -> dict[str, Any]:
    """The fetch stage's counts on a load record (jsonb arrives as text)."""
    value = record["fetch_counts"]
    return dict(json.loads(value) if isinstance(value, str) else value)


def states(s: FetchSetup) -> dict[str, int]:
    return dict(s.pipeline.query("SELECT state, count(*) FROM biobridge.notifications GROUP BY 1"))


def test_every_pointer_example_resolves_to_its_expected_rows(fetch_setup: FetchSetup) -> None:
    s, p = fetch_setup, fetch_setup.pipeline
    for vendor, user in CONNECTED.items():
        s.connect(vendor, user)
    sent = send_every_notification(s)

    first = p.ingest()  # loads what was pushed: every notification is deferred
    assert first.is_completed(), first.message
    assert first.result()["files_deferred"] == sent
    second = p.ingest()  # the fetch stage resolves them; the same run loads the documents
    assert second.is_completed(), second.message
    record = second.result()
    assert fetch_counts(record)["notifications_claimed"] == sent
    assert states(s) == {"fetched": sent}  # a PING is answered by the receiver, not landed

    got = {_key(r) for r in p.query(ROWS, ("{oura,whoop,fitbit,withings,polar}",))}
    assert got == expected_rows()
    count = len(got)

    # Lineage: every row -> a fetched document -> its notification -> the delivery's file.
    orphans = p.scalar(
        "SELECT count(*) FROM public.biometric_events AS e "
        "LEFT JOIN biobridge.fetched_documents AS d ON d.object_key = e.source_key "
        "LEFT JOIN biobridge.landed_files AS n ON n.object_key = d.notification_key "
        "WHERE e.device_type IN ('oura','whoop','fitbit','withings','polar') "
        "AND (d.object_key IS NULL OR n.state <> 'deferred')"
    )
    assert orphans == 0

    third = p.ingest()  # nothing due, nothing new
    assert third.is_completed(), third.message
    assert third.result()["rows_inserted"] == third.result()["rows_updated"] == 0
    assert fetch_counts(third.result())["notifications_claimed"] == 0
    assert len(p.query(ROWS, ("{oura,whoop,fitbit,withings,polar}",))) == count

    with connect(p.db_url) as conn:
        report = verify(conn, landing_store())
    assert report.ok, [str(d) for d in report.discrepancies]
    assert report.notification_states == {"fetched": sent}
    assert report.fetched_documents == report.fetched_documents_loaded > 0

    # Fitbit: subscriptions were created per collection; Accept-Language was sent.
    assert {(u, sub) for (u, sub) in s.fake.state.fitbit_subscriptions} >= {
        ("B7QK2M", "carol-activities"),
        ("B7QK2M", "carol-sleep"),
    }
    fitbit_days = [r for r in s.fake.requests("fitbit") if "/date/" in r.path]
    assert fitbit_days and all(r.accept_language == "en_GB" for r in fitbit_days)


def test_a_deletion_event_marks_the_rows_it_refers_to(fetch_setup: FetchSetup) -> None:
    s, p = fetch_setup, fetch_setup.pipeline
    s.connect("whoop", "bob")
    workout = example("whoop_workout.json")["id"]
    s.notify("whoop", whoop_event("workout", workout))
    for _ in range(2):
        assert p.ingest().is_completed()
    live = "SELECT count(*) FROM public.current_biometric_events WHERE device_type = 'whoop'"
    before = p.scalar(live)
    assert before == len(example("whoop_workout.expected.json")["rows"])

    s.notify("whoop", whoop_event("workout", workout, action="deleted"))
    for _ in range(2):
        assert p.ingest().is_completed()
    assert p.scalar(live) == 0
    marked = p.scalar("SELECT rows_deleted FROM biobridge.notifications WHERE state = 'deleted'")
    assert marked == before
    deleted = p.query(
        "SELECT count(*), min(deleted_by) FROM public.biometric_events WHERE deleted_at IS NOT NULL"
    )[0]
    assert deleted[0] == before
    assert (
        p.scalar("SELECT state FROM biobridge.notifications WHERE object_key = $1", (deleted[1],))
        == "deleted"
    )
    with connect(p.db_url) as conn:
        assert verify(conn, landing_store()).ok


def test_fitbit_user_revoked_access_marks_the_connection(fetch_setup: FetchSetup) -> None:
    s, p = fetch_setup, fetch_setup.pipeline
    s.connect("fitbit", "carol")
    item = {
        "collectionType": "userRevokedAccess",
        "date": "2025-07-29",
        "ownerId": "B7QK2M",
        "ownerType": "user",
        "subscriptionId": "carol-activities",
    }
    s.notify("fitbit", json.dumps([item]).encode())
    for _ in range(2):
        assert p.ingest().is_completed()
    status, reason = p.query(
        "SELECT status, status_reason FROM biobridge.vendor_connections WHERE user_id = 'carol'"
    )[0]
    assert status == "revoked" and "revoked access" in reason
    assert states(s) == {"resolved_empty": 1}
    assert fetch_counts(p.ingest().result())["connections_marked"] == 0  # nothing more to do


def test_oura_heartrate_user_is_the_notifications(fetch_setup: FetchSetup) -> None:
    s, p = fetch_setup, fetch_setup.pipeline
    s.connect("oura", "alice")
    s.notify("oura", (EXAMPLES / "oura_webhook_event.json").read_bytes())
    for _ in range(2):
        assert p.ingest().is_completed()
    users = p.query("SELECT DISTINCT user_id FROM public.biometric_events")
    assert users == [(OURA_USER,)]


def test_fitbit_core_temperature_uses_the_users_utc_offset(fetch_setup: FetchSetup) -> None:
    s, p = fetch_setup, fetch_setup.pipeline
    s.fake.state.utc_offsets_ms["B7QK2M"] = -7 * 3600 * 1000  # the profile says UTC-7
    s.connect("fitbit", "carol")
    day = {"tempCore": [{"dateTime": "2025-07-30T08:00:00", "value": 37.2}]}
    s.fake.add_document("fitbit", "temp_core", day, user_id="B7QK2M", accept_language="en_GB")
    item = {"collectionType": "body", "date": "2025-07-30", "ownerId": "B7QK2M"}
    s.notify("fitbit", json.dumps([item | {"ownerType": "user"}]).encode())
    for _ in range(2):
        assert p.ingest().is_completed()
    assert p.query('SELECT metric_type, value, "timestamp" FROM public.biometric_events') == [
        ("body_temperature_c", 37.2, datetime(2025, 7, 30, 15, tzinfo=UTC))
    ]
