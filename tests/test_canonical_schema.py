"""The canonical row contract and the metric catalogue."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pandera.errors
import polars as pl
import pytest

from schemas.canonical import (
    CANONICAL_SCHEMA,
    DEVICE_TYPES,
    ROW_COLUMNS,
    CanonicalRow,
    empty_canonical,
)
from schemas.catalogue import CATALOGUE, unit_of

GOOD: dict[str, Any] = {
    "user_id": "athlete_1",
    "device_type": "garmin",
    "metric_type": "resting_heart_rate_bpm",
    "value": 49.0,
    "unit": "bpm",
    "timestamp": datetime(2025, 7, 27, 7, tzinfo=UTC),
    "file_no": 0,
    "record_index": 0,
    "source_field": "restingHeartRateInBeatsPerMinute",
}


def frame(*overrides: dict[str, Any]) -> pl.DataFrame:
    return pl.DataFrame([{**GOOD, **o} for o in overrides], schema=CANONICAL_SCHEMA)


def failures(df: pl.DataFrame) -> set[tuple[int | None, str]]:
    with pytest.raises(pandera.errors.SchemaErrors) as caught:
        CanonicalRow.validate(df, lazy=True)
    cases = pl.DataFrame(caught.value.failure_cases)
    return set(cases.select("index", "column").iter_rows())


def test_good_rows_pass_including_the_generic_device() -> None:
    df = frame({}, {"device_type": "generic"}, {"device_type": "apple_health"})
    assert CanonicalRow.validate(df, lazy=True).height == 3


def test_schema_constant_matches_the_model() -> None:
    assert list(CanonicalRow.to_schema().columns) == list(CANONICAL_SCHEMA)
    assert list(CANONICAL_SCHEMA)[: len(ROW_COLUMNS)] == list(ROW_COLUMNS)
    assert empty_canonical().schema == pl.Schema(CANONICAL_SCHEMA)
    assert CANONICAL_SCHEMA["timestamp"] == pl.Datetime("us", "UTC")
    assert "generic" in DEVICE_TYPES and "oura" in DEVICE_TYPES


@pytest.mark.parametrize(
    ("override", "column"),
    [
        ({"user_id": ""}, "user_id"),
        ({"user_id": "   "}, "user_id"),
        ({"user_id": "u" * 257}, "user_id"),
        ({"user_id": None}, "user_id"),
        ({"device_type": "fitbyte"}, "device_type"),
        ({"metric_type": "heart_rate"}, "metric_type"),
        ({"unit": "ms"}, "CanonicalRow"),  # not the catalogue unit of the metric
        ({"value": float("inf")}, "value"),
        ({"value": float("nan")}, "value"),
        ({"value": None}, "value"),
        ({"timestamp": datetime(1969, 12, 31, tzinfo=UTC)}, "timestamp"),
        ({"timestamp": datetime.now(UTC) + timedelta(days=2)}, "timestamp"),
        ({"timestamp": None}, "timestamp"),
        ({"record_index": -1}, "record_index"),
    ],
)
def test_each_rule_fails_exactly_the_bad_row(override: dict[str, Any], column: str) -> None:
    found = failures(frame({}, override, {}))
    assert (1, column) in found
    assert {index for index, _ in found} == {1}


def test_a_wrong_dtype_is_a_schema_level_failure() -> None:
    df = frame({}).with_columns(pl.col("timestamp").dt.cast_time_unit("ns"))
    assert failures(df) == {(None, "timestamp")}


def test_a_missing_column_is_a_schema_level_failure() -> None:
    assert (None, "CanonicalRow") in failures(frame({}).drop("source_field"))


def test_catalogue_is_loaded_with_units() -> None:
    assert len(CATALOGUE) >= 100
    assert unit_of("hrv_rmssd_ms") == "ms"
    assert CATALOGUE["bmi"] == "kg/m2"
    with pytest.raises(KeyError, match=r"metric_catalogue\.json"):
        unit_of("hrv")
