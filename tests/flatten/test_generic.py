"""Flattening the generic shape: values, stamps, users, drift and device types."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tasks.flatten import (
    FlattenInput,
    flatten,
    flatten_many,
)
from tests.flatten.helpers import (
    generic_body,
    metrics,
    one,
)


def test_string_where_a_number_belongs_quarantines_only_that_value() -> None:
    body = generic_body(
        data={"readiness_score": 92, "resting_heart_rate": "abc", "sleep_score": 88}
    )
    result = one("oura", "generic", body)
    assert metrics(result.rows) == {"readiness_score": 92.0, "sleep_score": 88.0}
    [issue] = result.issues
    assert (issue.file_no, issue.record_index, issue.field) == (0, 0, "data.resting_heart_rate")
    assert issue.found == '"abc"'
    assert "resting_heart_rate" in issue.reason and "number" in issue.reason
    assert flatten("oura", "generic", body).height == 2


@pytest.mark.parametrize(
    ("bad", "found"),
    [
        (True, "true"),
        (False, "false"),
        ({"value": 48}, '{"value":48}'),
        ([48], "[48]"),
        (float("nan"), "nan"),
        (float("inf"), "inf"),
        ("NaN", '"NaN"'),
        ("1e400", '"1e400"'),
        (10**400, None),
    ],
)
def test_non_numbers_and_non_finite_values_are_issues(bad: Any, found: str | None) -> None:
    result = one(
        "oura", "generic", generic_body(data={"resting_heart_rate": bad, "sleep_score": 88})
    )
    assert metrics(result.rows) == {"sleep_score": 88.0}
    [issue] = result.issues
    assert issue.field == "data.resting_heart_rate"
    if found is not None:
        assert issue.found == found
    assert len(issue.found) <= 200


def test_numeric_strings_are_numbers_and_nulls_are_silently_skipped() -> None:
    body = generic_body(data={"resting_heart_rate": " 61.5", "sleep_score": None, "steps": "12000"})
    result = one("oura", "generic", body)
    assert metrics(result.rows) == {"resting_heart_rate_bpm": 61.5, "steps": 12000.0}
    assert result.issues == []


def test_long_found_excerpt_is_capped_at_200_chars() -> None:
    result = one("oura", "generic", generic_body(data={"sleep_score": "x" * 5000}))
    [issue] = result.issues
    assert len(issue.found) <= 200


@pytest.mark.parametrize(
    ("stamp", "instant"),
    [
        ("2025-07-28T21:28:15+02:00", datetime(2025, 7, 28, 19, 28, 15, tzinfo=UTC)),
        ("2025-07-28T12:28:15-0700", datetime(2025, 7, 28, 19, 28, 15, tzinfo=UTC)),
        ("2025-07-28T19:28:15.250Z", datetime(2025, 7, 28, 19, 28, 15, 250000, tzinfo=UTC)),
        ("2025-07-28", datetime(2025, 7, 28, tzinfo=UTC)),
        (1753730895, datetime(2025, 7, 28, 19, 28, 15, tzinfo=UTC)),
    ],
)
def test_timestamps_are_converted_to_utc(stamp: Any, instant: datetime) -> None:
    rows = flatten("oura", "generic", generic_body(timestamp=stamp))
    assert rows.height == 3
    assert set(rows["timestamp"]) == {instant}


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"timestamp": None}, "timestamp"),
        ({"timestamp": "yesterday"}, "timestamp"),
        ({"timestamp": "2025-07-28T19:28:15"}, "timestamp"),  # no zone: ambiguous
        ({"timestamp": True}, "timestamp"),
        ({"user_id": None}, "user_id"),
        ({"user_id": ""}, "user_id"),
        ({"user_id": "u" * 257}, "user_id"),
        ({"user_id": {"id": 1}}, "user_id"),
        ({"data": None}, "data"),
        ({"data": [1, 2]}, "data"),
    ],
)
def test_generic_body_without_usable_user_timestamp_or_data_is_rejected_whole(
    overrides: dict[str, Any], field: str
) -> None:
    body = generic_body(**overrides)
    if overrides.get("timestamp", "") is None:
        del body["timestamp"]
    result = one("oura", "generic", body)
    assert result.rows.height == 0
    [issue] = result.issues
    assert (issue.file_no, issue.record_index, issue.field) == (0, None, field)
    assert field in issue.reason and issue.expected


def test_zone_less_timestamp_issue_says_how_to_fix_it() -> None:
    [issue] = one("oura", "generic", generic_body(timestamp="2025-07-28T19:28:15")).issues
    assert "UTC offset" in issue.reason


def test_far_future_timestamp_is_quarantined() -> None:
    future = (datetime.now(UTC) + timedelta(days=3)).isoformat()
    result = one("oura", "generic", generic_body(timestamp=future))
    assert result.rows.height == 0
    assert {issue.field for issue in result.issues} == {"timestamp"}
    assert len(result.issues) == 1, "one issue per record, not per value"


def test_timestamp_just_ahead_of_now_is_kept() -> None:
    soon = (datetime.now(UTC) + timedelta(hours=2)).isoformat()
    assert flatten("oura", "generic", generic_body(timestamp=soon)).height == 3


def test_numeric_user_id_is_used_as_its_string() -> None:
    rows = flatten("oura", "generic", generic_body(user_id=48213))
    assert set(rows["user_id"]) == {"48213"}


def test_unknown_keys_are_drift_not_rows_nor_issues() -> None:
    body = generic_body(data={"sleep_score": 88, "mood": 3, "mood2": "x"}, extra_top=1)
    result = one("oura", "generic", body)
    assert metrics(result.rows) == {"sleep_score": 88.0}
    assert result.issues == []
    assert result.drift == {
        "oura:generic:data.mood": 1,
        "oura:generic:data.mood2": 1,
        "oura:generic:extra_top": 1,
    }


def test_catalogue_names_map_to_themselves() -> None:
    rows = flatten("oura", "generic", generic_body(data={"hrv_rmssd_ms": 41.0, "weight_kg": 70}))
    assert metrics(rows) == {"hrv_rmssd_ms": 41.0, "weight_kg": 70.0}
    assert set(rows["unit"]) == {"ms", "kg"}


@pytest.mark.parametrize(
    ("vendor", "context", "device_type"),
    [
        ("oura", {}, "oura"),
        ("apple_health", {}, "apple_health"),
        ("apple_health", {"device_type": "oura"}, "apple_health"),  # the route wins
        ("generic", {"device_type": "oura"}, "oura"),
        ("generic", {}, "generic"),  # posted to /webhooks/generic: the sender did not say
    ],
)
def test_generic_device_type(vendor: str, context: dict[str, Any], device_type: str) -> None:
    rows = flatten(vendor, "generic", generic_body(), context)
    assert set(rows["device_type"]) == {device_type}


def test_generic_with_an_unknown_device_type_is_rejected() -> None:
    result = one("generic", "generic", generic_body(), {"device_type": "fitbyte"})
    assert result.rows.height == 0
    [issue] = result.issues
    assert issue.record_index is None and "device_type" in issue.field


def test_one_bad_file_does_not_affect_its_batch() -> None:
    items = [
        FlattenInput(n, "oura", "generic", generic_body(user_id=f"u{n}"), {}) for n in range(5)
    ] + [FlattenInput(5, "oura", "generic", generic_body(timestamp="garbage"), {})]
    result = flatten_many(items)
    assert result.rows.height == 15
    assert [(i.file_no, i.record_index) for i in result.issues] == [(5, None)]
