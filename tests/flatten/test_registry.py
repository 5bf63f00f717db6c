"""The flatten registry: pointers, unknown body kinds and resource detection."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from tasks.flatten import (
    UnrecognisedBody,
    flatten,
    resource_of,
)
from tests.flatten.helpers import (
    EXAMPLE_RESOURCES,
    EXAMPLES,
    garmin_dailies,
    generic_body,
    one,
)


@pytest.mark.parametrize(
    ("vendor", "resource"),
    [
        ("oura", "notification"),
        ("whoop", "notification"),
        ("fitbit", "notification"),
        ("withings", "notification"),
        ("polar", "notification"),
        ("oura", "webhook"),
        ("withings", "notify"),
        ("garmin", "ping"),
    ],
)
def test_pointers_give_no_rows_and_no_issues(vendor: str, resource: str) -> None:
    resource = EXAMPLE_RESOURCES.get((vendor, resource), resource)
    result = one(vendor, resource, {"user_id": "u", "type": "sleep.updated"})
    assert result.rows.height == 0 and result.issues == []


def test_unknown_vendor_resource_is_a_whole_file_issue() -> None:
    result = one("oura", "daily_stress", {"data": []})
    [issue] = result.issues
    assert issue.record_index is None and issue.found == "oura/daily_stress"


def test_flatten_does_not_change_its_input() -> None:
    body = garmin_dailies()
    before = copy.deepcopy(body)
    flatten("garmin", "push", body)
    assert body == before


@pytest.mark.parametrize(
    ("vendor", "payload", "headers", "resource"),
    [
        ("oura", generic_body(), {}, "generic"),
        ("oura", generic_body(), {"X-Oura-Signature": "AB"}, None),
        (
            "oura",
            {"event_type": "create", "data_type": "sleep", "object_id": "x", "user_id": "u"},
            {"x-oura-signature": "AB"},
            "notification",
        ),
        ("apple_health", generic_body(), {}, "generic"),
        ("apple_health", {"data": {"metrics": [], "workouts": []}}, {}, "hae"),
        ("apple_health", {"data": {"workouts": []}}, {}, "hae"),
        ("generic", generic_body(), {}, "generic"),
        ("garmin", {"dailies": [{"userId": "g", "callbackURL": "https://x"}]}, {}, "ping"),
        ("garmin", garmin_dailies(), {}, "push"),
        (
            "whoop",
            {"user_id": 1, "id": "x", "type": "sleep.updated", "trace_id": "t"},
            {},
            "notification",
        ),
        ("fitbit", [{"collectionType": "sleep", "ownerId": "B"}], {}, "notification"),
        ("withings", "userid=1&appli=1&startdate=1&enddate=2", {}, "notification"),
        ("withings", b"userid=1&appli=4", {}, "notification"),
        ("polar", {"event": "PING", "timestamp": "2025-07-01T09:15:00Z"}, {}, "notification"),
        ("oura", [1, 2], {}, None),
        ("garmin", {"dailies": 3}, {}, None),
        ("apple_health", {"metrics": []}, {}, None),
        ("fitbit", {"collectionType": "sleep"}, {}, None),
        ("acme", {}, {}, None),
    ],
)
def test_resource_of(
    vendor: str, payload: Any, headers: dict[str, str], resource: str | None
) -> None:
    if resource is None:
        with pytest.raises(UnrecognisedBody, match="expected"):
            resource_of(vendor, payload, headers)
    else:
        assert resource_of(vendor, payload, headers) == resource


def test_resource_of_example_bodies_round_trip_through_flatten() -> None:
    for name, vendor, headers in [
        ("generic_daily_readiness", "oura", {}),
        ("garmin_dailies", "garmin", {}),
        ("garmin_ping", "garmin", {}),
        ("apple_health_auto_export", "apple_health", {}),
        ("oura_webhook_event", "oura", {"x-oura-signature": "AB"}),
        ("fitbit_notification", "fitbit", {}),
        ("polar_ping", "polar", {}),
    ]:
        payload = json.loads((EXAMPLES / f"{name}.json").read_text())
        resource = resource_of(vendor, payload, headers)
        result = one(vendor, resource, payload, {"user_id": "u"})
        assert result.issues == [], name
