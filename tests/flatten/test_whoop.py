"""WHOOP fetched records (spec section 4): examples and the rules on literal records."""

from __future__ import annotations

import copy
import json
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from tasks.flatten import flatten, resource_of
from tasks.flatten import whoop as whoop_module
from tests.flatten.fetched import (
    assert_mapping_in_catalogue,
    check_example,
    example_payload,
    examples_of,
)
from tests.flatten.helpers import EXAMPLES, metrics, one


@pytest.mark.parametrize("expected_file", examples_of("whoop"), ids=lambda p: p.name.split(".")[0])
def test_whoop_example(expected_file: Path) -> None:
    check_example(expected_file)


def test_whoop_mapping_targets_are_catalogue_metrics() -> None:
    assert_mapping_in_catalogue(whoop_module.MAPPING)


def _example(name: str) -> dict[str, Any]:
    body: dict[str, Any] = json.loads((EXAMPLES / f"{name}.json").read_text())
    return body


def _recovery(**overrides: Any) -> dict[str, Any]:
    record = _example("whoop_recovery")
    record.update(overrides)
    return record


def test_page_gives_rows_only_for_scored_records() -> None:
    states = ["SCORED", "PENDING_SCORE", "UNSCORABLE", None, "scored", "SCORED"]
    records = []
    for n, state in enumerate(states):
        record = _recovery(created_at=f"2025-07-2{n}T13:51:07.418Z", score_state=state)
        if state is None:
            del record["score_state"]
        records.append(record)
    result = one("whoop", "recovery", {"records": records, "next_token": "t"})
    assert result.issues == [] and not result.drift
    assert sorted(set(result.rows["record_index"])) == [0, 5]
    assert result.rows.height == 10


def test_pending_record_without_a_score_gives_nothing_and_no_issue() -> None:
    record = {"id": "x", "user_id": 1, "start": "2025-07-28T05:52:14.611Z"}
    for state in ("PENDING_SCORE", "UNSCORABLE"):
        result = one("whoop", "sleep", {**record, "score_state": state})
        assert result.rows.height == 0 and result.issues == []


def test_recovery_without_spo2_and_skin_temperature_older_device() -> None:
    record = _recovery()
    del record["score"]["spo2_percentage"]
    record["score"]["skin_temp_celsius"] = None
    rows = flatten("whoop", "recovery", record)
    assert set(rows["metric_type"]) == {
        "recovery_score_pct",
        "resting_heart_rate_bpm",
        "hrv_rmssd_ms",
    }
    assert set(rows["user_id"]) == {"48213"}
    assert set(rows["timestamp"]) == {datetime(2025, 7, 28, 13, 51, 7, 418000, tzinfo=UTC)}


def test_numeric_strings_and_nulls() -> None:
    record = _recovery(score={"recovery_score": "61", "resting_heart_rate": None})
    result = one("whoop", "recovery", record)
    assert metrics(result.rows) == {"recovery_score_pct": 61.0}
    assert result.issues == []


def test_workout_duration_is_end_minus_start_with_milliseconds() -> None:
    workout = _example("whoop_workout")
    workout.update(start="2025-07-28T17:31:10.250Z", end="2025-07-28T18:38:55.750-00:00")
    rows = flatten("whoop", "workout", workout)
    [duration] = rows.filter(pl.col("metric_type") == "workout_duration_s")["value"].to_list()
    assert math.isclose(duration, 4065.5)


def test_workout_without_end_has_no_duration_row() -> None:
    workout = _example("whoop_workout")
    del workout["end"]
    result = one("whoop", "workout", workout)
    assert "workout_duration_s" not in set(result.rows["metric_type"])
    assert result.issues == []
    assert result.rows.height == 12


@pytest.mark.parametrize("end", ["2025-07-28T17:00:00Z", "soon"])
def test_workout_ending_before_it_starts_or_unreadable_end_is_an_issue(end: str) -> None:
    workout = _example("whoop_workout")
    workout["end"] = end
    result = one("whoop", "workout", workout)
    assert "workout_duration_s" not in set(result.rows["metric_type"])
    assert result.rows.height == 12
    [issue] = result.issues
    assert (issue.record_index, issue.field) == (0, "end")
    assert "end" in issue.reason and "start" in issue.reason


def test_workout_energy_is_kcal_and_zones_are_seconds() -> None:
    workout = _example("whoop_workout")
    workout["score"] = {"kilojoule": 418.4, "zone_durations": {"zone_three_milli": 1500}}
    values = metrics(flatten("whoop", "workout", workout))
    assert math.isclose(values["workout_energy_kcal"], 100.0)
    assert values["workout_hr_zone_3_s"] == 1.5


def test_cycle_still_running_has_no_end_and_flattens() -> None:
    cycle = _example("whoop_cycle")
    cycle["end"] = None
    result = one("whoop", "cycle", cycle)
    assert result.issues == []
    assert math.isclose(metrics(result.rows)["total_energy_kcal"], 11247.92 / 4.184)


def test_nap_flattens_like_a_sleep() -> None:
    nap = _example("whoop_sleep")
    nap["nap"] = True
    assert flatten("whoop", "sleep", nap).height == 11


def test_user_comes_from_the_record_else_from_context() -> None:
    record = _recovery()
    del record["user_id"]
    assert flatten("whoop", "recovery", record).height == 0
    rows = flatten("whoop", "recovery", record, {"user_id": "ctx-user"})
    assert set(rows["user_id"]) == {"ctx-user"}
    result = one("whoop", "recovery", {"records": [record]})
    [issue] = result.issues
    assert (issue.record_index, issue.field) == (0, "records[0].user_id")


def test_score_that_is_not_an_object_is_an_issue() -> None:
    record = _recovery(score="78")
    result = one("whoop", "recovery", record)
    assert result.rows.height == 0
    [issue] = result.issues
    assert issue.field == "score"


def test_unknown_score_field_is_drift() -> None:
    record = _recovery()
    record["score"]["new_metric"] = 3
    result = one("whoop", "recovery", record)
    assert result.drift == {"whoop:recovery:score.new_metric": 1}
    assert result.rows.height == 5


def test_input_is_not_changed() -> None:
    workout = _example("whoop_workout")
    before = copy.deepcopy(workout)
    flatten("whoop", "workout", {"records": [workout]})
    assert workout == before


@pytest.mark.parametrize(
    ("name", "resource"),
    [
        ("whoop_recovery", "recovery"),
        ("whoop_sleep", "sleep"),
        ("whoop_cycle", "cycle"),
        ("whoop_workout", "workout"),
        ("whoop_webhook_event", "notification"),
    ],
)
def test_detect_recognises_fetched_records(name: str, resource: str) -> None:
    payload = example_payload(json.loads((EXAMPLES / f"{name}.expected.json").read_text()))
    assert resource_of("whoop", payload, {}) == resource
    if resource != "notification":
        assert resource_of("whoop", {"records": [payload], "next_token": None}, {}) == resource
