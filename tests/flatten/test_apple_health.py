"""Flattening Health Auto Export bodies."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import pytest

from schemas.vendors.apple_health import ACCEPTED_UNITS
from tasks.flatten import (
    flatten,
)
from tasks.flatten.apple_health import UNIT_CONVERSIONS
from tests.flatten.helpers import (
    metrics,
    one,
)


def _hae(*metrics: dict[str, Any], workouts: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"data": {"metrics": list(metrics), "workouts": workouts or []}}


def _metric(name: str, units: str, *points: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "units": units, "data": list(points)}


HAE_USER = {"user_id": "a1"}
STAMP = "2025-07-28 07:12:00 -0700"
AT = datetime(2025, 7, 28, 14, 12, tzinfo=UTC)


def test_hae_without_user_id_is_rejected_with_the_header_fix() -> None:
    result = one("apple_health", "hae", _hae(_metric("step_count", "count", {"date": STAMP})))
    [issue] = result.issues
    assert issue.record_index is None
    assert "X-User-Id" in issue.reason


@pytest.mark.parametrize(
    ("name", "units", "qty", "metric", "value"),
    [
        ("active_energy", "kJ", 418.4, "active_energy_kcal", 100.0),
        ("weight_body_mass", "lb", 100, "weight_kg", 45.359237),
        ("weight_body_mass", "g", 72300, "weight_kg", 72.3),
        ("body_temperature", "degF", 98.6, "body_temperature_c", 37.0),
        ("apple_sleeping_wrist_temperature", "degC", 35.1, "skin_temperature_c", 35.1),
        ("blood_oxygen_saturation", "%", 0.97, "spo2_pct", 97.0),
        ("blood_oxygen_saturation", "%", 97, "spo2_pct", 97.0),
        ("body_fat_percentage", "%", 0.184, "body_fat_pct", 18.4),
        ("respiratory_rate", "breaths/min", 14, "respiratory_rate_brpm", 14.0),
        ("vo2_max", "ml/(kg·min)", 48.2, "vo2_max_ml_kg_min", 48.2),
        ("heart_rate_variability", "ms", 58.7, "hrv_sdnn_ms", 58.7),
    ],
)
def test_hae_units_are_converted(
    name: str, units: str, qty: float, metric: str, value: float
) -> None:
    result = one(
        "apple_health", "hae", _hae(_metric(name, units, {"date": STAMP, "qty": qty})), HAE_USER
    )
    assert result.issues == []
    [row] = result.rows.iter_rows(named=True)
    assert row["metric_type"] == metric
    assert math.isclose(row["value"], value, rel_tol=1e-9)
    assert row["timestamp"] == AT


def test_hae_unknown_unit_is_an_issue_never_guessed() -> None:
    body = _hae(
        _metric("active_energy", "Cal", {"date": STAMP, "qty": 1}, {"date": STAMP, "qty": 2}),
        _metric("step_count", "count", {"date": STAMP, "qty": 10}),
    )
    result = one("apple_health", "hae", body, HAE_USER)
    assert metrics(result.rows) == {"steps": 10.0}
    [issue] = result.issues
    assert issue.field == "metrics[0].units"
    assert issue.found == '"Cal"' and "kJ" in issue.expected


def test_hae_heart_rate_min_avg_max_and_bad_point() -> None:
    body = _hae(
        _metric(
            "heart_rate",
            "count/min",
            {"date": STAMP, "Min": 54, "Avg": 57.5, "Max": 61},
            {"date": "not a date", "Min": 1, "Avg": 2, "Max": 3},
            {"date": STAMP, "Min": 50, "Avg": False, "Max": None},
        )
    )
    result = one("apple_health", "hae", body, HAE_USER)
    assert sorted(result.rows["value"].to_list()) == [50.0, 54.0, 57.5, 61.0]
    fields = sorted(issue.field for issue in result.issues)
    assert fields == ["metrics[0].data[1].date", "metrics[0].data[2].Avg"]
    assert sorted(issue.record_index for issue in result.issues) == [1, 2]


def test_hae_sleep_stamp_falls_back_and_unaggregated_sleep_gives_nothing() -> None:
    body = _hae(
        _metric(
            "sleep_analysis",
            "min",
            {"date": "2025-07-28", "totalSleep": 420, "inBedStart": "2025-07-27 22:56:00 -0700"},
            {"date": "2025-07-29", "deep": 60},
            {"startDate": "2025-07-27 23:00:00 -0700", "value": "Core", "qty": 1.5},
        )
    )
    result = one("apple_health", "hae", body, HAE_USER)
    assert result.issues == []
    got = {
        (r["metric_type"], r["value"], r["timestamp"]) for r in result.rows.iter_rows(named=True)
    }
    assert got == {
        ("sleep_duration_s", 25200.0, datetime(2025, 7, 28, 5, 56, tzinfo=UTC)),
        ("sleep_deep_s", 3600.0, datetime(2025, 7, 29, tzinfo=UTC)),
    }


def test_hae_workout_fallbacks_and_units() -> None:
    workout = {
        "start": STAMP,
        "duration": 600,
        "activeEnergy": {"qty": 418.4, "units": "kJ"},
        "distance": {"qty": 2, "units": "mi"},
        "heartRate": {"avg": {"qty": 140, "units": "bpm"}, "max": {"qty": 170, "units": "bpm"}},
    }
    result = one("apple_health", "hae", _hae(workouts=[workout]), HAE_USER)
    assert result.issues == []
    values = metrics(result.rows)
    assert values == pytest.approx(
        {
            "workout_duration_s": 600.0,
            "workout_energy_kcal": 100.0,
            "workout_distance_m": 3218.688,
            "workout_avg_heart_rate_bpm": 140.0,
            "workout_max_heart_rate_bpm": 170.0,
        }
    )
    assert set(result.rows["timestamp"]) == {AT}


def test_hae_workout_prefers_active_energy_burned_over_the_older_field() -> None:
    workout = {
        "start": STAMP,
        "activeEnergyBurned": {"qty": 100, "units": "kcal"},
        "activeEnergy": {"qty": 999, "units": "kcal"},
    }
    rows = flatten("apple_health", "hae", _hae(workouts=[workout]), HAE_USER)
    assert metrics(rows) == {"workout_energy_kcal": 100.0}


def test_hae_unknown_metric_is_drift() -> None:
    body = _hae(_metric("mindful_minutes", "min", {"date": STAMP, "qty": 10}))
    body["data"]["symptoms"] = []
    body["data"]["newArray"] = []
    result = one("apple_health", "hae", body, HAE_USER)
    assert result.rows.height == 0 and result.issues == []
    assert result.drift == {
        "apple_health:hae:metrics.mindful_minutes": 1,
        "apple_health:hae:newArray": 1,
    }


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"metrics": {"name": "step_count"}}, "data.metrics"),
        ({"metrics": [{"name": "step_count", "data": 5}]}, "data.metrics[0]"),
        ({"workouts": "none"}, "data.workouts"),
    ],
)
def test_hae_malformed_structure_rejects_the_file(data: dict[str, Any], field: str) -> None:
    body = {"data": {"metrics": [_metric("step_count", "count", {"date": STAMP, "qty": 1})]}}
    body["data"].update(data)
    result = one("apple_health", "hae", body, HAE_USER)
    assert result.rows.height == 0
    assert [(i.record_index, i.field) for i in result.issues] == [(None, field)]


def test_hae_point_that_is_not_an_object_is_a_record_issue() -> None:
    body = _hae(_metric("step_count", "count", "oops", {"date": STAMP, "qty": 10}))
    result = one("apple_health", "hae", body, HAE_USER)
    assert metrics(result.rows) == {"steps": 10.0}
    assert [(i.record_index, i.field) for i in result.issues] == [(0, "metrics[0].data[0]")]


def test_every_accepted_hae_unit_has_a_conversion() -> None:
    units = {unit for accepted in ACCEPTED_UNITS.values() for unit in accepted or ()}
    assert units <= set(UNIT_CONVERSIONS)
