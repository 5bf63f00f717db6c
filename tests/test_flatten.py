"""The flatten stage: pure functions over literal payloads and the vendor examples."""

from __future__ import annotations

import copy
import json
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from schemas.canonical import CANONICAL_SCHEMA, ROW_COLUMNS
from schemas.vendors.apple_health import ACCEPTED_UNITS
from tasks.flatten import (
    Flattened,
    FlattenInput,
    UnrecognisedBody,
    flatten,
    flatten_many,
    resource_of,
)
from tasks.flatten.apple_health import UNIT_CONVERSIONS

EXAMPLES = Path(__file__).resolve().parents[1] / "deployments" / "examples"
FLATTENED_VENDORS = {"generic", "garmin", "apple_health"}


def _expected_files() -> list[Path]:
    files = sorted(EXAMPLES.glob("*.expected.json"))
    return [f for f in files if json.loads(f.read_text())["vendor"] in FLATTENED_VENDORS]


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def _key(row: dict[str, Any]) -> tuple[Any, ...]:
    stamp = row["timestamp"]
    instant = _instant(stamp) if isinstance(stamp, str) else stamp
    return (row["user_id"], row["device_type"], row["metric_type"], row["unit"], instant)


def assert_same_rows(actual: pl.DataFrame, expected: list[dict[str, Any]]) -> None:
    """Rows compared as a multiset: keys exactly, values with 1e-6 relative tolerance."""
    got = sorted(((_key(r), r["value"]) for r in actual.iter_rows(named=True)), key=repr)
    want = sorted(((_key(r), float(r["value"])) for r in expected), key=repr)
    assert [k for k, _ in got] == [k for k, _ in want]
    for (key, value), (_, wanted) in zip(got, want, strict=True):
        assert math.isclose(value, wanted, rel_tol=1e-6), (key, value, wanted)


def one(
    vendor: str, resource: str, payload: Any, context: dict[str, Any] | None = None
) -> Flattened:
    return flatten_many([FlattenInput(0, vendor, resource, payload, context or {})])


# ---------------------------------------------------------------- the spec's examples


@pytest.mark.parametrize("expected_file", _expected_files(), ids=lambda p: p.name.split(".")[0])
def test_vendor_example(expected_file: Path) -> None:
    expected = json.loads(expected_file.read_text())
    payload = json.loads((EXAMPLES / expected["payload_file"]).read_text())
    context = expected.get("context") or {}

    rows = flatten(expected["vendor"], expected["resource"], payload, context)
    result = one(expected["vendor"], expected["resource"], payload, context)

    assert rows.columns == list(ROW_COLUMNS)
    assert len(expected["rows"]) == expected["row_count"]
    assert_same_rows(rows, expected["rows"])
    assert result.issues == []
    assert not result.drift, "every key of the examples is either mapped or deliberately ignored"


def test_examples_cover_all_three_vendors() -> None:
    vendors = {json.loads(f.read_text())["vendor"] for f in _expected_files()}
    assert vendors == FLATTENED_VENDORS


def test_flatten_returns_the_public_columns_and_dtypes() -> None:
    rows = flatten("oura", "generic", _generic())
    assert rows.schema == pl.Schema({c: CANONICAL_SCHEMA[c] for c in ROW_COLUMNS})


def test_flatten_many_keeps_lineage_columns() -> None:
    items = [
        FlattenInput(7, "oura", "generic", _generic(), {}),
        FlattenInput(8, "garmin", "push", _garmin_dailies(), {}),
    ]
    result = flatten_many(items)
    assert result.rows.schema == pl.Schema(CANONICAL_SCHEMA)
    assert set(result.rows["file_no"]) == {7, 8}
    generic_rows = result.rows.filter(pl.col("file_no") == 7)
    assert set(generic_rows["record_index"]) == {0}
    assert "resting_heart_rate" in set(generic_rows["source_field"])
    garmin_fields = set(result.rows.filter(pl.col("file_no") == 8)["source_field"])
    assert "restingHeartRateInBeatsPerMinute" in garmin_fields


# ---------------------------------------------------------------- generic shape


def _generic(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "event_type": "daily_readiness",
        "user_id": "athlete_1",
        "timestamp": "2025-07-28T19:28:15Z",
        "data": {"readiness_score": 92, "resting_heart_rate": 48, "sleep_score": 88},
    }
    body.update(overrides)
    return body


def _metrics(rows: pl.DataFrame) -> dict[str, float]:
    return dict(zip(rows["metric_type"], rows["value"], strict=True))


def test_string_where_a_number_belongs_quarantines_only_that_value() -> None:
    body = _generic(data={"readiness_score": 92, "resting_heart_rate": "abc", "sleep_score": 88})
    result = one("oura", "generic", body)
    assert _metrics(result.rows) == {"readiness_score": 92.0, "sleep_score": 88.0}
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
    result = one("oura", "generic", _generic(data={"resting_heart_rate": bad, "sleep_score": 88}))
    assert _metrics(result.rows) == {"sleep_score": 88.0}
    [issue] = result.issues
    assert issue.field == "data.resting_heart_rate"
    if found is not None:
        assert issue.found == found
    assert len(issue.found) <= 200


def test_numeric_strings_are_numbers_and_nulls_are_silently_skipped() -> None:
    body = _generic(data={"resting_heart_rate": " 61.5", "sleep_score": None, "steps": "12000"})
    result = one("oura", "generic", body)
    assert _metrics(result.rows) == {"resting_heart_rate_bpm": 61.5, "steps": 12000.0}
    assert result.issues == []


def test_long_found_excerpt_is_capped_at_200_chars() -> None:
    result = one("oura", "generic", _generic(data={"sleep_score": "x" * 5000}))
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
    rows = flatten("oura", "generic", _generic(timestamp=stamp))
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
    body = _generic(**overrides)
    if overrides.get("timestamp", "") is None:
        del body["timestamp"]
    result = one("oura", "generic", body)
    assert result.rows.height == 0
    [issue] = result.issues
    assert (issue.file_no, issue.record_index, issue.field) == (0, None, field)
    assert field in issue.reason and issue.expected


def test_zone_less_timestamp_issue_says_how_to_fix_it() -> None:
    [issue] = one("oura", "generic", _generic(timestamp="2025-07-28T19:28:15")).issues
    assert "UTC offset" in issue.reason


def test_far_future_timestamp_is_quarantined() -> None:
    future = (datetime.now(UTC) + timedelta(days=3)).isoformat()
    result = one("oura", "generic", _generic(timestamp=future))
    assert result.rows.height == 0
    assert {issue.field for issue in result.issues} == {"timestamp"}
    assert len(result.issues) == 1, "one issue per record, not per value"


def test_timestamp_just_ahead_of_now_is_kept() -> None:
    soon = (datetime.now(UTC) + timedelta(hours=2)).isoformat()
    assert flatten("oura", "generic", _generic(timestamp=soon)).height == 3


def test_numeric_user_id_is_used_as_its_string() -> None:
    rows = flatten("oura", "generic", _generic(user_id=48213))
    assert set(rows["user_id"]) == {"48213"}


def test_unknown_keys_are_drift_not_rows_nor_issues() -> None:
    body = _generic(data={"sleep_score": 88, "mood": 3, "mood2": "x"}, extra_top=1)
    result = one("oura", "generic", body)
    assert _metrics(result.rows) == {"sleep_score": 88.0}
    assert result.issues == []
    assert result.drift == {
        "oura:generic:data.mood": 1,
        "oura:generic:data.mood2": 1,
        "oura:generic:extra_top": 1,
    }


def test_catalogue_names_map_to_themselves() -> None:
    rows = flatten("oura", "generic", _generic(data={"hrv_rmssd_ms": 41.0, "weight_kg": 70}))
    assert _metrics(rows) == {"hrv_rmssd_ms": 41.0, "weight_kg": 70.0}
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
    rows = flatten(vendor, "generic", _generic(), context)
    assert set(rows["device_type"]) == {device_type}


def test_generic_with_an_unknown_device_type_is_rejected() -> None:
    result = one("generic", "generic", _generic(), {"device_type": "fitbyte"})
    assert result.rows.height == 0
    [issue] = result.issues
    assert issue.record_index is None and "device_type" in issue.field


def test_one_bad_file_does_not_affect_its_batch() -> None:
    items = [
        FlattenInput(n, "oura", "generic", _generic(user_id=f"u{n}"), {}) for n in range(5)
    ] + [FlattenInput(5, "oura", "generic", _generic(timestamp="garbage"), {})]
    result = flatten_many(items)
    assert result.rows.height == 15
    assert [(i.file_no, i.record_index) for i in result.issues] == [(5, None)]


# ---------------------------------------------------------------- Garmin


def _garmin_dailies(**overrides: Any) -> dict[str, Any]:
    summary: dict[str, Any] = {
        "userId": "g1",
        "summaryId": "s1",
        "calendarDate": "2025-07-27",
        "startTimeInSeconds": 1753599600,
        "startTimeOffsetInSeconds": -25200,
        "steps": 100,
        "restingHeartRateInBeatsPerMinute": 49,
        "averageHeartRateInBeatsPerMinute": 63,
        "timeOffsetHeartRateSamples": {"0": 58, "15": 59},
    }
    summary.update(overrides)
    return {"dailies": [summary]}


START = datetime(2025, 7, 27, 7, 0, tzinfo=UTC)


def test_garmin_samples_are_stamped_at_start_plus_offset() -> None:
    rows = flatten("garmin", "push", _garmin_dailies())
    samples = rows.filter(pl.col("metric_type") == "heart_rate_bpm").sort("timestamp")
    assert samples["timestamp"].to_list() == [START, START + timedelta(seconds=15)]
    assert samples["value"].to_list() == [58.0, 59.0]
    assert "heart_rate_avg_bpm" not in set(rows["metric_type"]), "a 7-day average: not mapped"


def test_garmin_bad_sample_is_one_issue_and_its_siblings_stay() -> None:
    body = _garmin_dailies(timeOffsetHeartRateSamples={"0": 58, "15": "high", "30": None})
    result = one("garmin", "push", body)
    hr = result.rows.filter(pl.col("metric_type") == "heart_rate_bpm")
    assert hr["value"].to_list() == [58.0]
    [issue] = result.issues
    assert issue.field == 'dailies[0].timeOffsetHeartRateSamples["15"]'
    assert issue.record_index == 0
    assert "steps" in set(result.rows["metric_type"])


def test_garmin_sample_key_that_is_not_seconds_is_an_issue() -> None:
    result = one("garmin", "push", _garmin_dailies(timeOffsetHeartRateSamples={"noon": 58}))
    [issue] = result.issues
    assert issue.field == 'dailies[0].timeOffsetHeartRateSamples["noon"]'
    assert "heart_rate_bpm" not in set(result.rows["metric_type"])


def test_garmin_summary_without_start_is_quarantined_alone() -> None:
    body = _garmin_dailies()
    broken = copy.deepcopy(body["dailies"][0])
    del broken["startTimeInSeconds"]
    body["dailies"].append(broken)
    result = one("garmin", "push", body)
    assert set(result.rows["record_index"]) == {0}
    [issue] = result.issues
    assert (issue.record_index, issue.field) == (1, "dailies[1].startTimeInSeconds")


@pytest.mark.parametrize("stamp", ["soon", True, 1e20])
def test_garmin_unusable_start_is_an_issue(stamp: Any) -> None:
    result = one("garmin", "push", _garmin_dailies(startTimeInSeconds=stamp))
    assert result.rows.height == 0
    assert [i.field for i in result.issues] == ["dailies[0].startTimeInSeconds"]


def test_garmin_epoch_in_milliseconds_is_an_issue_that_says_so() -> None:
    result = one("garmin", "push", _garmin_dailies(startTimeInSeconds=1753599600000))
    assert result.rows.height == 0
    [issue] = result.issues
    assert issue.field == "dailies[0].startTimeInSeconds"
    assert "milliseconds" in issue.reason


@pytest.mark.parametrize("key", ["999999999999999", "-99999999", "2678401"])
def test_garmin_sample_offset_beyond_a_month_is_an_issue_not_a_crash(key: str) -> None:
    body = _garmin_dailies(timeOffsetHeartRateSamples={"0": 58, key: 59})
    result = one("garmin", "push", body)
    assert result.rows.filter(pl.col("metric_type") == "heart_rate_bpm").height == 1
    assert [issue.field for issue in result.issues] == [
        f'dailies[0].timeOffsetHeartRateSamples["{key}"]'
    ]


def test_garmin_summary_in_the_far_future_is_quarantined_once_per_record() -> None:
    start = int((datetime.now(UTC) + timedelta(days=3)).timestamp())
    result = one("garmin", "push", _garmin_dailies(startTimeInSeconds=start))
    assert result.rows.height == 0
    assert [(i.record_index, i.field) for i in result.issues] == [(0, "timestamp")]


def test_garmin_numeric_user_id_and_numeric_string_value() -> None:
    rows = flatten("garmin", "push", _garmin_dailies(userId=12345, steps="100"))
    assert set(rows["user_id"]) == {"12345"}
    assert _metrics(rows.filter(pl.col("metric_type") == "steps")) == {"steps": 100.0}


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
    assert _metrics(flatten("garmin", "push", body)) == {"sleep_duration_s": 600.0}


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
    assert _metrics(result.rows) == {
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
    body = _garmin_dailies(stepsGoal=10000, brandNewMetric=5)
    body["epochs"] = [{"userId": "g1"}]
    body["futureSummaries"] = [{"userId": "g1"}, {"userId": "g1"}]
    result = one("garmin", "push", body)
    assert result.drift == {
        "garmin:push:dailies.brandNewMetric": 1,
        "garmin:push:futureSummaries": 2,
    }
    assert result.issues == []


def test_garmin_ping_items_inside_a_push_give_no_rows() -> None:
    body = _garmin_dailies()
    body["dailies"].append({"userId": "g1", "callbackURL": "https://example.invalid/x"})
    result = one("garmin", "push", body)
    assert set(result.rows["record_index"]) == {0}
    assert result.issues == []


def test_garmin_body_that_is_not_summary_lists_is_rejected_whole() -> None:
    result = one("garmin", "push", {"dailies": {"userId": "g1"}})
    [issue] = result.issues
    assert issue.record_index is None and issue.field == "dailies"


# ---------------------------------------------------------------- Apple Health (HAE)


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
    assert _metrics(result.rows) == {"steps": 10.0}
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
    values = _metrics(result.rows)
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
    assert _metrics(rows) == {"workout_energy_kcal": 100.0}


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
    assert _metrics(result.rows) == {"steps": 10.0}
    assert [(i.record_index, i.field) for i in result.issues] == [(0, "metrics[0].data[0]")]


def test_every_accepted_hae_unit_has_a_conversion() -> None:
    units = {unit for accepted in ACCEPTED_UNITS.values() for unit in accepted or ()}
    assert units <= set(UNIT_CONVERSIONS)


# ---------------------------------------------------------------- registry and notifications


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
    result = one(vendor, resource, {"user_id": "u", "type": "sleep.updated"})
    assert result.rows.height == 0 and result.issues == []


def test_unknown_vendor_resource_is_a_whole_file_issue() -> None:
    result = one("oura", "daily_stress", {"data": []})
    [issue] = result.issues
    assert issue.record_index is None and issue.found == "oura/daily_stress"


def test_flatten_does_not_change_its_input() -> None:
    body = _garmin_dailies()
    before = copy.deepcopy(body)
    flatten("garmin", "push", body)
    assert body == before


# ---------------------------------------------------------------- resource_of


@pytest.mark.parametrize(
    ("vendor", "payload", "headers", "resource"),
    [
        ("oura", _generic(), {}, "generic"),
        ("oura", _generic(), {"X-Oura-Signature": "AB"}, None),
        (
            "oura",
            {"event_type": "create", "data_type": "sleep", "object_id": "x", "user_id": "u"},
            {"x-oura-signature": "AB"},
            "notification",
        ),
        ("apple_health", _generic(), {}, "generic"),
        ("apple_health", {"data": {"metrics": [], "workouts": []}}, {}, "hae"),
        ("apple_health", {"data": {"workouts": []}}, {}, "hae"),
        ("generic", _generic(), {}, "generic"),
        ("garmin", {"dailies": [{"userId": "g", "callbackURL": "https://x"}]}, {}, "ping"),
        ("garmin", _garmin_dailies(), {}, "push"),
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
