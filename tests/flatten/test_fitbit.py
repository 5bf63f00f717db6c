"""Fitbit fetched summaries (spec section 6): examples, the Accept-Language unit rule and the
user's UTC offset, on literal documents."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tasks.flatten import fitbit as fitbit_module
from tasks.flatten import flatten, resource_of
from tests.flatten.fetched import (
    assert_catalogue_rows,
    assert_mapping_in_catalogue,
    check_example,
    example_payload,
    examples_of,
)
from tests.flatten.helpers import EXAMPLES, metrics, one

US = {"user_id": "B7QK2M", "accept_language": "en_US"}
GB = {"user_id": "B7QK2M", "accept_language": "en_GB"}
DAY = datetime(2025, 7, 28, tzinfo=UTC)


@pytest.mark.parametrize("expected_file", examples_of("fitbit"), ids=lambda p: p.name.split(".")[0])
def test_fitbit_example(expected_file: Path) -> None:
    check_example(expected_file)


def test_fitbit_mapping_targets_are_catalogue_metrics() -> None:
    assert_mapping_in_catalogue(fitbit_module.MAPPING)


def _skin(relative: Any) -> dict[str, Any]:
    return {"tempSkin": [{"dateTime": "2025-07-28", "value": {"nightlyRelative": relative}}]}


def _core(*entries: dict[str, Any]) -> dict[str, Any]:
    return {"tempCore": list(entries)}


@pytest.mark.parametrize(
    ("context", "celsius"),
    [
        (US, -0.4),  # a Fahrenheit delta: x 5/9, no 32 shift
        (GB, -0.72),
        ({"user_id": "B7QK2M"}, -0.72),  # absent: metric
        ({"user_id": "B7QK2M", "accept_language": "fr_FR"}, -0.72),
        ({"user_id": "B7QK2M", "accept_language": " en_US "}, -0.4),
    ],
)
def test_skin_temperature_delta_follows_accept_language(
    context: dict[str, Any], celsius: float
) -> None:
    result = one("fitbit", "temp_skin", _skin(-0.72), context)
    assert result.issues == []
    [row] = result.rows.iter_rows(named=True)
    assert row["metric_type"] == "body_temperature_delta_c" and row["unit"] == "degC"
    assert math.isclose(row["value"], celsius, rel_tol=1e-9)
    assert row["timestamp"] == DAY


@pytest.mark.parametrize(
    ("context", "value", "celsius"),
    [(US, 98.6, 37.0), (US, "100.4", 38.0), (GB, 37.1, 37.1), ({"user_id": "u"}, 36.5, 36.5)],
)
def test_core_temperature_follows_accept_language(
    context: dict[str, Any], value: Any, celsius: float
) -> None:
    rows = flatten(
        "fitbit", "temp_core", _core({"dateTime": "2025-07-28T06:12:00", "value": value}), context
    )
    [row] = rows.iter_rows(named=True)
    assert row["metric_type"] == "body_temperature_c"
    assert math.isclose(row["value"], celsius, rel_tol=1e-9)
    assert_catalogue_rows(rows)


@pytest.mark.parametrize(
    ("offset", "instant"),
    [
        (-25200, datetime(2025, 7, 28, 13, 12, tzinfo=UTC)),  # UTC-7: local 06:12 is 13:12Z
        (3600, datetime(2025, 7, 28, 5, 12, tzinfo=UTC)),
        (19800, datetime(2025, 7, 28, 0, 42, tzinfo=UTC)),  # UTC+5:30
        ("-25200", datetime(2025, 7, 28, 13, 12, tzinfo=UTC)),
        (0, datetime(2025, 7, 28, 6, 12, tzinfo=UTC)),
        (None, datetime(2025, 7, 28, 6, 12, tzinfo=UTC)),  # default 0
    ],
)
def test_core_temperature_is_local_time_minus_the_users_offset(
    offset: Any, instant: datetime
) -> None:
    context: dict[str, Any] = {"user_id": "u", "utc_offset_seconds": offset}
    if offset is None:
        del context["utc_offset_seconds"]
    entry = {"dateTime": "2025-07-28T06:12:00", "value": 37.0}
    result = one("fitbit", "temp_core", _core(entry), context)
    assert result.issues == []
    assert result.rows["timestamp"].to_list() == [instant]


def test_core_temperature_with_its_own_offset_is_used_as_is() -> None:
    entry = {"dateTime": "2025-07-28T06:12:00+02:00", "value": 37.0}
    rows = flatten(
        "fitbit", "temp_core", _core(entry), {"user_id": "u", "utc_offset_seconds": -25200}
    )
    assert rows["timestamp"].to_list() == [datetime(2025, 7, 28, 4, 12, tzinfo=UTC)]


@pytest.mark.parametrize("offset", ["minus seven", 10**9, True])
def test_unusable_utc_offset_quarantines_the_core_temperature(offset: Any) -> None:
    entry = {"dateTime": "2025-07-28T06:12:00", "value": 37.0}
    result = one(
        "fitbit", "temp_core", _core(entry), {"user_id": "u", "utc_offset_seconds": offset}
    )
    assert result.rows.height == 0
    [issue] = result.issues
    assert issue.record_index == 0
    assert "utc_offset_seconds" in issue.field + issue.reason


def test_daily_summaries_are_stamped_at_their_date_whatever_the_offset() -> None:
    body = {"hrv": [{"dateTime": "2025-07-28", "value": {"dailyRmssd": 41.7, "deepRmssd": None}}]}
    rows = flatten("fitbit", "hrv", body, {"user_id": "u", "utc_offset_seconds": -25200})
    assert metrics(rows) == {"sleep_avg_hrv_rmssd_ms": 41.7}
    assert rows["timestamp"].to_list() == [DAY]


def test_heart_rate_range_gives_one_row_per_day_and_units_do_not_change_bpm() -> None:
    body = {
        "activities-heart": [
            {"dateTime": "2025-07-27", "value": {"restingHeartRate": 58, "heartRateZones": []}},
            {"dateTime": "2025-07-28", "value": {"restingHeartRate": "57"}},
            {"dateTime": "2025-07-29", "value": {"heartRateZones": []}},
        ],
        "activities-heart-intraday": {"dataset": []},
    }
    result = one("fitbit", "activities-heart", body, US)
    assert result.issues == [] and not result.drift
    assert sorted(result.rows["value"].to_list()) == [57.0, 58.0]
    assert sorted(set(result.rows["record_index"])) == [0, 1]


@pytest.mark.parametrize("body", [{"hrv": []}, {"hrv": None}])
def test_empty_summary_gives_no_rows(body: dict[str, Any]) -> None:
    result = one("fitbit", "hrv", body, GB)
    assert result.rows.height == 0 and result.issues == []


def test_body_of_another_resource_is_rejected() -> None:
    result = one("fitbit", "hrv", _skin(-0.4), GB)
    [issue] = result.issues
    assert (issue.record_index, issue.field) == (None, "hrv")


def test_missing_user_rejects_the_file() -> None:
    result = one("fitbit", "hrv", {"hrv": [{"dateTime": "2025-07-28", "value": {"dailyRmssd": 4}}]})
    [issue] = result.issues
    assert (issue.record_index, issue.field) == (None, "context.user_id")


def test_bad_value_is_an_issue_naming_the_entry() -> None:
    result = one("fitbit", "temp_skin", _skin(True), GB)
    assert result.rows.height == 0
    [issue] = result.issues
    assert issue.field == "tempSkin[0].value.nightlyRelative"


@pytest.mark.parametrize(
    ("name", "resource"),
    [
        ("fitbit_heart_rate_summary", "activities-heart"),
        ("fitbit_hrv", "hrv"),
        ("fitbit_temp_skin", "temp_skin"),
        ("fitbit_notification", "notification"),
    ],
)
def test_detect_recognises_fetched_summaries(name: str, resource: str) -> None:
    payload = example_payload(json.loads((EXAMPLES / f"{name}.expected.json").read_text()))
    assert resource_of("fitbit", payload, {}) == resource
    assert resource_of("fitbit", _core(), {}) == "temp_core"


def test_temperature_resources_also_answer_to_their_body_key() -> None:
    core = _core({"dateTime": "2025-07-28T06:12:00", "value": 98.6})
    context = {**US, "utc_offset_seconds": -25200}
    assert flatten("fitbit", "tempCore", core, context).equals(
        flatten("fitbit", "temp_core", core, context)
    )
    assert flatten("fitbit", "tempSkin", _skin(-0.72), US).height == 1
