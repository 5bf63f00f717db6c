"""Flattening Garmin push bodies."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl
import pytest

from tasks.flatten import (
    flatten,
)
from tests.flatten.helpers import (
    garmin_dailies,
    metrics,
    one,
)

START = datetime(2025, 7, 27, 7, 0, tzinfo=UTC)


def test_garmin_samples_are_stamped_at_start_plus_offset() -> None:
    rows = flatten("garmin", "push", garmin_dailies())
    samples = rows.filter(pl.col("metric_type") == "heart_rate_bpm").sort("timestamp")
    assert samples["timestamp"].to_list() == [START, START + timedelta(seconds=15)]
    assert samples["value"].to_list() == [58.0, 59.0]
    assert "heart_rate_avg_bpm" not in set(rows["metric_type"]), "a 7-day average: not mapped"


def test_garmin_bad_sample_is_one_issue_and_its_siblings_stay() -> None:
    body = garmin_dailies(timeOffsetHeartRateSamples={"0": 58, "15": "high", "30": None})
    result = one("garmin", "push", body)
    hr = result.rows.filter(pl.col("metric_type") == "heart_rate_bpm")
    assert hr["value"].to_list() == [58.0]
    [issue] = result.issues
    assert issue.field == 'dailies[0].timeOffsetHeartRateSamples["15"]'
    assert issue.record_index == 0
    assert "steps" in set(result.rows["metric_type"])


def test_garmin_sample_key_that_is_not_seconds_is_an_issue() -> None:
    result = one("garmin", "push", garmin_dailies(timeOffsetHeartRateSamples={"noon": 58}))
    [issue] = result.issues
    assert issue.field == 'dailies[0].timeOffsetHeartRateSamples["noon"]'
    assert "heart_rate_bpm" not in set(result.rows["metric_type"])


def test_garmin_summary_without_start_is_quarantined_alone() -> None:
    body = garmin_dailies()
    broken = copy.deepcopy(body["dailies"][0])
    del broken["startTimeInSeconds"]
    body["dailies"].append(broken)
    result = one("garmin", "push", body)
    assert set(result.rows["record_index"]) == {0}
    [issue] = result.issues
    assert (issue.record_index, issue.field) == (1, "dailies[1].startTimeInSeconds")


@pytest.mark.parametrize("stamp", ["soon", True, 1e20])
def test_garmin_unusable_start_is_an_issue(stamp: Any) -> None:
    result = one("garmin", "push", garmin_dailies(startTimeInSeconds=stamp))
    assert result.rows.height == 0
    assert [i.field for i in result.issues] == ["dailies[0].startTimeInSeconds"]


def test_garmin_epoch_in_milliseconds_is_an_issue_that_says_so() -> None:
    result = one("garmin", "push", garmin_dailies(startTimeInSeconds=1753599600000))
    assert result.rows.height == 0
    [issue] = result.issues
    assert issue.field == "dailies[0].startTimeInSeconds"
    assert "milliseconds" in issue.reason


@pytest.mark.parametrize("key", ["999999999999999", "-99999999", "2678401"])
def test_garmin_sample_offset_beyond_a_month_is_an_issue_not_a_crash(key: str) -> None:
    body = garmin_dailies(timeOffsetHeartRateSamples={"0": 58, key: 59})
    result = one("garmin", "push", body)
    assert result.rows.filter(pl.col("metric_type") == "heart_rate_bpm").height == 1
    assert [issue.field for issue in result.issues] == [
        f'dailies[0].timeOffsetHeartRateSamples["{key}"]'
    ]


def test_garmin_summary_in_the_far_future_is_quarantined_once_per_record() -> None:
    start = int((datetime.now(UTC) + timedelta(days=3)).timestamp())
    result = one("garmin", "push", garmin_dailies(startTimeInSeconds=start))
    assert result.rows.height == 0
    assert [(i.record_index, i.field) for i in result.issues] == [(0, "timestamp")]


def test_garmin_numeric_user_id_and_numeric_string_value() -> None:
    rows = flatten("garmin", "push", garmin_dailies(userId=12345, steps="100"))
    assert set(rows["user_id"]) == {"12345"}
    assert metrics(rows.filter(pl.col("metric_type") == "steps")) == {"steps": 100.0}


def test_garmin_negative_stress_and_body_battery_are_skipped_silently() -> None:
    body = {
        "stressDetails": [
            {
                "userId": "g1",
                "startTimeInSeconds": 1753599600,
                "timeOffsetStressLevelValues": {"0": 18, "180": -1, "360": -2},
                "timeOffsetBodyBatteryValues": {"0": -1, "180": 64},
            }
        ],
        "dailies": [{"userId": "g1", "startTimeInSeconds": 1753599600, "averageStressLevel": -1}],
    }
    result = one("garmin", "push", body)
    assert sorted(result.rows["value"].to_list()) == [18.0, 64.0]
    assert result.issues == []


def test_garmin_off_wrist_sleep_keeps_only_its_duration() -> None:
    body = {
        "sleeps": [
            {
                "userId": "g1",
                "startTimeInSeconds": 1753681860,
                "durationInSeconds": 600,
                "deepSleepDurationInSeconds": 0,
                "validation": "OFF_WRIST",
                "overallSleepScore": {"value": 10},
                "timeOffsetSleepSpo2": {"0": 95},
            }
        ]
    }
    assert metrics(flatten("garmin", "push", body)) == {"sleep_duration_s": 600.0}


def test_garmin_other_summary_types() -> None:
    body = {
        "bodyComps": [
            {"userId": "g1", "measurementTimeInSeconds": 1753711960, "weightInGrams": 72350}
        ],
        "bloodPressures": [
            {
                "userId": "g1",
                "measurementTimeInSeconds": 1753711960,
                "systolic": 121,
                "diastolic": 79,
                "pulse": 61,
                "sourceType": "MANUAL",
            }
        ],
        "skinTemp": [
            {"userId": "g1", "startTimeInSeconds": 1753681860, "avgDeviationCelsius": -0.3}
        ],
        "userMetrics": [{"userId": "g1", "calendarDate": "2025-07-28", "vo2Max": 51.0}],
        "allDayRespiration": [
            {
                "userId": "g1",
                "startTimeInSeconds": 1753681860,
                "timeOffsetEpochToBreaths": {"0": 14.5},
            }
        ],
    }
    result = one("garmin", "push", body)
    assert metrics(result.rows) == {
        "weight_kg": 72.35,
        "blood_pressure_systolic_mmhg": 121.0,
        "blood_pressure_diastolic_mmhg": 79.0,
        "heart_rate_bpm": 61.0,
        "body_temperature_delta_c": -0.3,
        "vo2_max_ml_kg_min": 51.0,
        "respiratory_rate_brpm": 14.5,
    }
    vo2 = result.rows.filter(pl.col("metric_type") == "vo2_max_ml_kg_min")
    assert vo2["timestamp"].to_list() == [datetime(2025, 7, 28, tzinfo=UTC)]
    assert result.issues == [] and not result.drift
    assert sorted(set(result.rows["record_index"])) == [0, 1, 2, 3, 4]


def test_garmin_drift_reports_only_truly_unknown_keys() -> None:
    body = garmin_dailies(stepsGoal=10000, brandNewMetric=5)
    body["epochs"] = [{"userId": "g1"}]
    body["futureSummaries"] = [{"userId": "g1"}, {"userId": "g1"}]
    result = one("garmin", "push", body)
    assert result.drift == {
        "garmin:push:dailies.brandNewMetric": 1,
        "garmin:push:futureSummaries": 2,
    }
    assert result.issues == []


def test_garmin_ping_items_inside_a_push_give_no_rows() -> None:
    body = garmin_dailies()
    body["dailies"].append({"userId": "g1", "callbackURL": "https://example.invalid/x"})
    result = one("garmin", "push", body)
    assert set(result.rows["record_index"]) == {0}
    assert result.issues == []


def test_garmin_body_that_is_not_summary_lists_is_rejected_whole() -> None:
    result = one("garmin", "push", {"dailies": {"userId": "g1"}})
    [issue] = result.issues
    assert issue.record_index is None and issue.field == "dailies"
