"""Oura fetched documents (spec section 3): examples and the rules on literal documents."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from tasks.flatten import flatten, resource_of
from tasks.flatten import oura as oura_module
from tests.flatten.fetched import (
    assert_catalogue_rows,
    assert_mapping_in_catalogue,
    by_metric,
    check_example,
    example_payload,
    examples_of,
)
from tests.flatten.helpers import EXAMPLES, metrics, one

USER = {"user_id": "oura-user-1"}
T0 = datetime(2025, 7, 28, 7, 0, tzinfo=UTC)


@pytest.mark.parametrize("expected_file", examples_of("oura"), ids=lambda p: p.name.split(".")[0])
def test_oura_example(expected_file: Path) -> None:
    check_example(expected_file)


def test_oura_mapping_targets_are_catalogue_metrics() -> None:
    assert_mapping_in_catalogue(oura_module.MAPPING)


def _readiness(**overrides: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "id": "r1",
        "day": "2025-07-28",
        "score": 80,
        "temperature_deviation": -0.2,
        "contributors": {"hrv_balance": 70},
        "timestamp": "2025-07-28T00:00:00-07:00",
    }
    document.update(overrides)
    return document


def test_page_flattens_every_element_and_ignores_the_token() -> None:
    page = {
        "data": [
            _readiness(),
            _readiness(day="2025-07-29", score=81, timestamp="2025-07-29T00:00:00-07:00"),
            _readiness(day="2025-07-30", score=82, timestamp="2025-07-30T00:00:00-07:00"),
        ],
        "next_token": "abc",
    }
    result = one("oura", "daily_readiness", page, USER)
    assert result.issues == [] and not result.drift
    scores = result.rows.filter(pl.col("metric_type") == "readiness_score").sort("timestamp")
    assert scores["value"].to_list() == [80.0, 81.0, 82.0]
    assert scores["timestamp"].to_list() == [T0, T0 + timedelta(days=1), T0 + timedelta(days=2)]
    assert sorted(set(result.rows["record_index"])) == [0, 1, 2]
    assert set(result.rows["user_id"]) == {"oura-user-1"}
    assert set(result.rows["device_type"]) == {"oura"}


@pytest.mark.parametrize("page", [{"data": [], "next_token": None}, {"data": None}, []])
def test_empty_pages_give_no_rows_and_no_issues(page: Any) -> None:
    result = one("oura", "heartrate", page, USER)
    assert result.rows.height == 0 and result.issues == []


def test_heartrate_page_stamps_each_sample_at_its_own_time() -> None:
    page = {
        "data": [
            {"bpm": 61, "source": "awake", "timestamp": "2025-07-28T14:00:00+00:00"},
            {"bpm": "64", "source": "rest", "timestamp": "2025-07-28T16:05:00+02:00"},
            {"bpm": None, "source": "awake", "timestamp": "2025-07-28T14:10:00+00:00"},
        ],
        "next_token": None,
    }
    rows = flatten("oura", "heartrate", page, USER).sort("timestamp")
    assert rows["value"].to_list() == [61.0, 64.0]
    at = datetime(2025, 7, 28, 14, tzinfo=UTC)
    assert rows["timestamp"].to_list() == [at, at + timedelta(minutes=5)]


def test_nulls_give_no_rows_and_numeric_strings_are_numbers() -> None:
    document = _readiness(
        score="85",
        temperature_deviation=None,
        temperature_trend_deviation=" 0.1",
        contributors={"hrv_balance": None, "sleep_balance": "77"},
    )
    result = one("oura", "daily_readiness", document, USER)
    assert result.issues == []
    assert metrics(result.rows) == {
        "readiness_score": 85.0,
        "body_temperature_trend_delta_c": 0.1,
        "readiness_contributor_sleep_balance": 77.0,
    }


@pytest.mark.parametrize("bad", [True, "high", {"v": 1}, [1]])
def test_non_numbers_are_value_issues_and_the_rest_stays(bad: Any) -> None:
    result = one("oura", "daily_readiness", _readiness(score=bad), USER)
    assert "readiness_score" not in set(result.rows["metric_type"])
    assert "body_temperature_delta_c" in set(result.rows["metric_type"])
    [issue] = result.issues
    assert (issue.file_no, issue.record_index, issue.field) == (0, 0, "score")


def test_unknown_contributor_and_unknown_field_are_drift_not_rows() -> None:
    document = _readiness(contributors={"hrv_balance": 70, "new_thing": 5}, brand_new=1)
    result = one("oura", "daily_readiness", document, USER)
    assert "readiness_contributor_new_thing" not in set(result.rows["metric_type"])
    assert result.issues == []
    assert result.drift == {
        "oura:daily_readiness:contributors.new_thing": 1,
        "oura:daily_readiness:brand_new": 1,
    }


def test_daily_activity_and_daily_sleep_contributors_get_their_own_prefix() -> None:
    activity = {"timestamp": "2025-07-27T04:00:00-07:00", "contributors": {"stay_active": 81}}
    sleep = {"timestamp": "2025-07-28T00:00:00-07:00", "contributors": {"timing": 100}}
    assert metrics(flatten("oura", "daily_activity", activity, USER)) == {
        "activity_contributor_stay_active": 81.0
    }
    assert metrics(flatten("oura", "daily_sleep", sleep, USER)) == {
        "sleep_contributor_timing": 100.0
    }


def test_daily_spo2_is_stamped_at_its_date_and_null_average_gives_nothing() -> None:
    rows = flatten("oura", "daily_spo2", {"day": "2025-07-28", "spo2_percentage": {"average": 97}})
    assert rows.height == 0, "no user in context: the file is rejected"
    result = one(
        "oura",
        "daily_spo2",
        {
            "data": [
                {"day": "2025-07-28", "spo2_percentage": {"average": 97}},
                {"day": "2025-07-29", "spo2_percentage": None},
                {"day": "2025-07-30", "spo2_percentage": {"average": None}},
            ]
        },
        USER,
    )
    assert result.issues == []
    assert result.rows["timestamp"].to_list() == [datetime(2025, 7, 28, tzinfo=UTC)]


def test_missing_user_context_rejects_the_file() -> None:
    result = one("oura", "daily_readiness", _readiness(), {})
    assert result.rows.height == 0
    [issue] = result.issues
    assert (issue.record_index, issue.field) == (None, "context.user_id")


@pytest.mark.parametrize("stamp", [None, "2025-07-28T00:00:00", "yesterday"])
def test_record_without_a_usable_stamp_is_quarantined_alone(stamp: Any) -> None:
    page = {"data": [_readiness(timestamp=stamp), _readiness()]}
    result = one("oura", "daily_readiness", page, USER)
    assert set(result.rows["record_index"]) == {1}
    [issue] = result.issues
    assert (issue.record_index, issue.field) == (0, "data[0].timestamp")


def _sleep(**overrides: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "bedtime_start": "2025-07-27T22:48:00-07:00",
        "type": "long_sleep",
        "total_sleep_duration": 26280,
        "heart_rate": {
            "interval": 300.0,
            "items": [None, 58.0, None, 53],
            "timestamp": "2025-07-27T22:48:00.000-07:00",
        },
        "hrv": {"interval": 300, "items": [], "timestamp": "2025-07-27T22:48:00-07:00"},
    }
    document.update(overrides)
    return document


BED = datetime(2025, 7, 28, 5, 48, tzinfo=UTC)


@pytest.mark.parametrize("kind", ["deleted", "rest"])
def test_sleep_of_type_deleted_or_rest_gives_no_rows(kind: str) -> None:
    page = {"data": [_sleep(type=kind), _sleep(bedtime_start="2025-07-28T22:50:00-07:00")]}
    result = one("oura", "sleep", page, USER)
    assert result.issues == []
    assert set(result.rows["record_index"]) == {1}


@pytest.mark.parametrize("kind", ["long_sleep", "sleep", "late_nap", None])
def test_other_sleep_types_flatten(kind: str | None) -> None:
    rows = flatten("oura", "sleep", _sleep(type=kind), USER)
    assert "sleep_duration_s" in set(rows["metric_type"])


def test_sleep_samples_skip_null_items_and_are_spaced_by_the_interval() -> None:
    result = one("oura", "sleep", _sleep(), USER)
    assert result.issues == []
    samples = result.rows.filter(pl.col("metric_type") == "heart_rate_bpm").sort("timestamp")
    assert samples["value"].to_list() == [58.0, 53.0]
    assert samples["timestamp"].to_list() == [
        BED + timedelta(minutes=5),
        BED + timedelta(minutes=15),
    ]
    summary = result.rows.filter(pl.col("metric_type") == "sleep_duration_s")
    assert summary["timestamp"].to_list() == [BED]


def test_sample_series_uses_its_own_timestamp_and_a_fractional_interval() -> None:
    series = {"interval": 2.5, "items": [40, 41, 42], "timestamp": "2025-07-28T06:00:00Z"}
    rows = flatten("oura", "sleep", _sleep(hrv=series, heart_rate=None), USER)
    hrv = rows.filter(pl.col("metric_type") == "hrv_rmssd_ms").sort("timestamp")
    start = datetime(2025, 7, 28, 6, tzinfo=UTC)
    assert hrv["timestamp"].to_list() == [
        start,
        start + timedelta(seconds=2.5),
        start + timedelta(seconds=5),
    ]
    assert_catalogue_rows(rows)


@pytest.mark.parametrize(
    ("series", "field"),
    [
        (
            {"interval": 0, "items": [50], "timestamp": "2025-07-28T06:00:00Z"},
            "heart_rate.interval",
        ),
        (
            {"interval": None, "items": [50], "timestamp": "2025-07-28T06:00:00Z"},
            "heart_rate.interval",
        ),
        ({"interval": 300, "items": [50]}, "heart_rate.timestamp"),
        ({"interval": 300, "items": "50,51", "timestamp": "2025-07-28T06:00:00Z"}, "heart_rate"),
        ([50, 51], "heart_rate"),
    ],
)
def test_unusable_sample_series_is_an_issue_and_the_sleep_stays(series: Any, field: str) -> None:
    result = one("oura", "sleep", _sleep(heart_rate=series), USER)
    assert "heart_rate_bpm" not in set(result.rows["metric_type"])
    assert "sleep_duration_s" in set(result.rows["metric_type"])
    assert [(issue.record_index, issue.field) for issue in result.issues] == [(0, field)]


def test_bad_sample_item_is_one_issue_and_its_siblings_stay() -> None:
    series = {"interval": 60, "items": [50, "x", 52], "timestamp": "2025-07-28T06:00:00Z"}
    result = one("oura", "sleep", _sleep(heart_rate=series), USER)
    assert by_metric(result.rows)["heart_rate_bpm"] == [50.0, 52.0]
    [issue] = result.issues
    assert issue.field == "heart_rate.items[1]"


def test_element_that_is_not_an_object_is_a_record_issue() -> None:
    page = {"data": [5, {"bpm": 60, "timestamp": "2025-07-28T14:00:00Z"}]}
    result = one("oura", "heartrate", page, USER)
    assert result.rows["value"].to_list() == [60.0]
    assert [(issue.record_index, issue.field) for issue in result.issues] == [(0, "data[0]")]


@pytest.mark.parametrize(
    ("name", "resource"),
    [
        ("oura_daily_readiness", "daily_readiness"),
        ("oura_daily_sleep", "daily_sleep"),
        ("oura_daily_activity", "daily_activity"),
        ("oura_sleep", "sleep"),
        ("oura_heartrate", "heartrate"),
        ("oura_daily_spo2", "daily_spo2"),
        ("oura_webhook_event", "notification"),
        ("generic_daily_readiness", "generic"),
    ],
)
def test_detect_recognises_fetched_documents(name: str, resource: str) -> None:
    expected = json.loads((EXAMPLES / f"{name}.expected.json").read_text())
    payload = example_payload(expected)
    headers = {"X-Oura-Signature": "AB"} if resource == "notification" else {}
    assert resource_of("oura", payload, headers) == resource
    assert oura_module.detect(payload, {}) in oura_module.RESOURCES
