"""Polar AccessLink fetched documents (spec section 8): examples, local start times and ISO 8601
durations on literal documents."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tasks.flatten import flatten, resource_of
from tasks.flatten import polar as polar_module
from tests.flatten.fetched import (
    assert_mapping_in_catalogue,
    check_example,
    example_payload,
    examples_of,
)
from tests.flatten.helpers import EXAMPLES, metrics, one

USER = {"user_id": "90317"}


@pytest.mark.parametrize("expected_file", examples_of("polar"), ids=lambda p: p.name.split(".")[0])
def test_polar_example(expected_file: Path) -> None:
    check_example(expected_file)


def test_polar_mapping_targets_are_catalogue_metrics() -> None:
    assert_mapping_in_catalogue(polar_module.MAPPING)


def _exercise(**overrides: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "id": 1,
        "start-time": "2025-07-28T10:31:05",
        "start-time-utc-offset": -420,
        "duration": "PT1H7M45S",
        "calories": 812,
    }
    document.update(overrides)
    return document


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("PT1H7M45S", 4065.0),
        ("PT45M12.5S", 2712.5),
        ("PT45M12,25S", 2712.25),
        ("PT0.5S", 0.5),
        ("PT1H", 3600.0),
        ("PT90M", 5400.0),
        ("P1DT2H", 93600.0),
        ("PT1.5H", 5400.0),
        ("PT0S", 0.0),
    ],
)
def test_iso_durations_with_fractional_seconds(text: str, seconds: float) -> None:
    result = one("polar", "exercise", _exercise(duration=text), USER)
    assert result.issues == []
    assert math.isclose(metrics(result.rows)["workout_duration_s"], seconds, abs_tol=1e-9)


@pytest.mark.parametrize(
    ("duration", "found"),
    [
        ("1:07:45", '"1:07:45"'),
        ("-PT5M", '"-PT5M"'),
        ("PT", '"PT"'),
        ("P1DT", '"P1DT"'),
        ("P1M", '"P1M"'),  # a month has no fixed length
        (4065, "a bare number (no unit)"),
        (True, "true"),
    ],
)
def test_unreadable_duration_is_an_issue_never_guessed(duration: Any, found: str) -> None:
    result = one("polar", "exercise", _exercise(duration=duration), USER)
    assert metrics(result.rows) == {"workout_energy_kcal": 812.0}
    [issue] = result.issues
    assert (issue.record_index, issue.field) == (0, "duration")
    assert issue.found == found and "ISO 8601" in issue.expected


@pytest.mark.parametrize(
    ("start", "offset", "instant"),
    [
        ("2025-07-28T10:31:05", -420, datetime(2025, 7, 28, 17, 31, 5, tzinfo=UTC)),
        ("2025-07-28T10:31:05", 120, datetime(2025, 7, 28, 8, 31, 5, tzinfo=UTC)),
        ("2025-07-28T00:10:00", 330, datetime(2025, 7, 27, 18, 40, tzinfo=UTC)),  # UTC+5:30
        ("2025-07-28T23:50:00", -300, datetime(2025, 7, 29, 4, 50, tzinfo=UTC)),
        ("2025-07-28T10:31:05", 0, datetime(2025, 7, 28, 10, 31, 5, tzinfo=UTC)),
        ("2025-07-28T10:31:05", "-420", datetime(2025, 7, 28, 17, 31, 5, tzinfo=UTC)),
        ("2025-07-28T10:31:05.500", -420, datetime(2025, 7, 28, 17, 31, 5, 500000, tzinfo=UTC)),
        # a start-time that carries its own offset is an instant already
        ("2025-07-28T10:31:05+02:00", -420, datetime(2025, 7, 28, 8, 31, 5, tzinfo=UTC)),
        ("2025-07-28T17:31:05Z", None, datetime(2025, 7, 28, 17, 31, 5, tzinfo=UTC)),
    ],
)
def test_start_is_local_time_minus_the_offset_in_minutes(
    start: str, offset: Any, instant: datetime
) -> None:
    document = _exercise(**{"start-time": start, "start-time-utc-offset": offset})
    result = one("polar", "exercise", document, USER)
    assert result.issues == []
    assert set(result.rows["timestamp"]) == {instant}


@pytest.mark.parametrize("offset", [None, "west", 5000, True])
def test_local_start_without_a_usable_offset_is_quarantined(offset: Any) -> None:
    document = _exercise(**{"start-time-utc-offset": offset})
    if offset is None:
        del document["start-time-utc-offset"]
    result = one("polar", "exercise", document, USER)
    assert result.rows.height == 0
    [issue] = result.issues
    assert issue.record_index == 0
    assert "start-time-utc-offset" in issue.field + issue.reason


def test_list_of_exercises_gives_one_record_each() -> None:
    exercises = [_exercise(), _exercise(id=2, calories=None, distance="5000.5")]
    result = one("polar", "exercise", exercises, USER)
    assert result.issues == []
    assert sorted(set(result.rows["record_index"])) == [0, 1]
    assert metrics(result.rows.filter(result.rows["record_index"] == 1)) == {
        "workout_duration_s": 4065.0,
        "workout_distance_m": 5000.5,
    }


def test_heart_rate_nulls_and_numeric_strings() -> None:
    document = _exercise(**{"heart-rate": {"average": "149", "maximum": None}})
    assert metrics(flatten("polar", "exercise", document, USER)) == {
        "workout_duration_s": 4065.0,
        "workout_energy_kcal": 812.0,
        "workout_avg_heart_rate_bpm": 149.0,
    }


def _night(**overrides: Any) -> dict[str, Any]:
    night: dict[str, Any] = {
        "date": "2025-07-28",
        "sleep_start_time": "2025-07-27T23:04:12-07:00",
        "light_sleep": 14520,
        "sleep_score": 81,
        "hypnogram": {"23:04": 2},
        "heart_rate_samples": {"23:06": 61},
    }
    night.update(overrides)
    return night


def test_nights_page_and_samples_without_a_date_are_not_flattened() -> None:
    page = {"nights": [_night(), _night(sleep_start_time="2025-07-28T22:00:00+02:00")]}
    result = one("polar", "sleep", page, USER)
    assert result.issues == [] and not result.drift
    assert set(result.rows["timestamp"]) == {
        datetime(2025, 7, 28, 6, 4, 12, tzinfo=UTC),
        datetime(2025, 7, 28, 20, 0, tzinfo=UTC),
    }
    assert set(result.rows["metric_type"]) == {"sleep_light_s", "sleep_score"}


def test_night_without_an_offset_in_its_start_is_quarantined() -> None:
    result = one("polar", "sleep", _night(sleep_start_time="2025-07-27T23:04:12"), USER)
    assert result.rows.height == 0
    [issue] = result.issues
    assert issue.field == "sleep_start_time"


def test_missing_user_rejects_the_file() -> None:
    result = one("polar", "sleep", _night())
    [issue] = result.issues
    assert (issue.record_index, issue.field) == (None, "context.user_id")


@pytest.mark.parametrize(
    ("name", "resource"),
    [
        ("polar_exercise", "exercise"),
        ("polar_sleep", "sleep"),
        ("polar_exercise_event", "notification"),
        ("polar_ping", "notification"),
    ],
)
def test_detect_recognises_fetched_documents(name: str, resource: str) -> None:
    payload = example_payload(json.loads((EXAMPLES / f"{name}.expected.json").read_text()))
    assert resource_of("polar", payload, {}) == resource
    if resource == "sleep":
        assert resource_of("polar", {"nights": [payload]}, {}) == "sleep"
    if resource == "exercise":
        assert resource_of("polar", [payload], {}) == "exercise"
