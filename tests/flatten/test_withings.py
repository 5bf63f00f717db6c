"""Withings Getmeas pages (spec section 7): examples and the rules on literal pages."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tasks.flatten import flatten, resource_of
from tasks.flatten import withings as withings_module
from tests.flatten.fetched import (
    assert_catalogue_rows,
    assert_mapping_in_catalogue,
    by_metric,
    check_example,
    examples_of,
)
from tests.flatten.helpers import EXAMPLES, metrics, one

USER = {"user_id": "38164427"}
DATE = 1753711925
AT = datetime(2025, 7, 28, 14, 12, 5, tzinfo=UTC)


@pytest.mark.parametrize(
    "expected_file", examples_of("withings"), ids=lambda p: p.name.split(".")[0]
)
def test_withings_example(expected_file: Path) -> None:
    check_example(expected_file)


def test_withings_mapping_targets_are_catalogue_metrics() -> None:
    assert_mapping_in_catalogue(withings_module.MAPPING)


def _group(*measures: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    group: dict[str, Any] = {
        "grpid": 1,
        "attrib": 0,
        "date": DATE,
        "category": 1,
        "measures": list(measures),
    }
    group.update(overrides)
    return group


def _page(*groups: dict[str, Any], more: int = 0) -> dict[str, Any]:
    return {"status": 0, "body": {"measuregrps": list(groups), "more": more, "offset": 0}}


def _m(value: Any, measure_type: Any, unit: Any) -> dict[str, Any]:
    return {"value": value, "type": measure_type, "unit": unit}


@pytest.mark.parametrize(
    ("measure", "metric", "value"),
    [
        (_m(72350, 1, -3), "weight_kg", 72.35),
        (_m(7, 1, 1), "weight_kg", 70.0),  # a positive power of ten
        (_m(2, 4, 0), "height_m", 2.0),
        (_m(18, 4, -1), "height_m", 1.8),
        (_m(3672, 12, -2), "body_temperature_c", 36.72),
        (_m(3672, 71, -2), "body_temperature_c", 36.72),
        (_m(3451, 73, -2), "skin_temperature_c", 34.51),
        (_m(82, 91, -1), "pulse_wave_velocity_m_s", 8.2),
        (_m(4812, 123, -2), "vo2_max_ml_kg_min", 48.12),
        (_m(97, 54, 0), "spo2_pct", 97.0),
        (_m("72350", "1", "-3"), "weight_kg", 72.35),  # numeric strings are numbers
        (_m(5, 6, 0), "body_fat_pct", 5.0),  # (-5 % is now quarantined: physical bounds)
    ],
)
def test_value_is_value_times_ten_to_the_unit(
    measure: dict[str, Any], metric: str, value: float
) -> None:
    result = one("withings", "getmeas", _page(_group(measure)), USER)
    assert result.issues == []
    [row] = result.rows.iter_rows(named=True)
    assert row["metric_type"] == metric
    assert math.isclose(row["value"], value, rel_tol=1e-12)
    assert row["timestamp"] == AT and row["user_id"] == "38164427"
    assert_catalogue_rows(result.rows)


def test_only_category_one_and_never_attrib_one() -> None:
    page = _page(
        _group(_m(70, 1, 0)),
        _group(_m(71, 1, 0), category=2),  # a user goal
        _group(_m(72, 1, 0), attrib=1),  # the device could not tell whose it was
        _group(_m(73, 1, 0), attrib=2),  # entered by the user: kept
        _group(_m(74, 1, 0), category="1", attrib="1"),
        _group(_m(75, 1, 0), category="2"),
    )
    result = one("withings", "getmeas", page, USER)
    assert result.issues == []
    assert by_metric(result.rows) == {"weight_kg": [70.0, 73.0]}
    assert sorted(set(result.rows["record_index"])) == [0, 3]


@pytest.mark.parametrize("category", [None, 3, "goal"])
def test_group_of_an_unknown_category_is_quarantined(category: Any) -> None:
    group = _group(_m(70, 1, 0), category=category)
    if category is None:
        del group["category"]
    result = one("withings", "getmeas", _page(group, _group(_m(80, 1, 0))), USER)
    assert result.rows["value"].to_list() == [80.0]
    [issue] = result.issues
    assert (issue.record_index, issue.field) == (0, "body.measuregrps[0].category")


def test_every_group_of_a_page_flattens_whatever_more_says() -> None:
    page = _page(
        _group(_m(70, 1, 0), _m(1841, 6, -2), _m(999, 170, 0)),  # type 170: not mapped
        _group(_m(121, 10, 0), _m(78, 9, 0), _m(63, 11, 0), date=DATE + 60),
        more=1,
    )
    result = one("withings", "getmeas", page, USER)
    assert result.issues == [] and not result.drift
    assert metrics(result.rows) == {
        "weight_kg": 70.0,
        "body_fat_pct": 18.41,
        "blood_pressure_systolic_mmhg": 121.0,
        "blood_pressure_diastolic_mmhg": 78.0,
        "heart_rate_bpm": 63.0,
    }


@pytest.mark.parametrize(
    ("measure", "found"),
    [
        (_m(70, 1, None), "nothing (missing)"),
        (_m(70, 1, 0.5), "0.5"),
        (_m(70, 1, "kg"), "kg"),
        (_m(70, 1, True), "true"),
        (_m(70, 1, 400), "400"),
    ],
)
def test_unusable_unit_quarantines_only_that_measure(measure: dict[str, Any], found: str) -> None:
    result = one("withings", "getmeas", _page(_group(measure, _m(1841, 6, -2))), USER)
    assert metrics(result.rows) == {"body_fat_pct": 18.41}
    [issue] = result.issues
    assert issue.field == "body.measuregrps[0].measures[0].unit"
    assert issue.found == found


def test_missing_null_or_non_numeric_values() -> None:
    group = _group(_m(None, 1, -3), {"type": 6, "unit": -2}, _m("heavy", 8, -2), _m(5611, 76, -2))
    result = one("withings", "getmeas", _page(group), USER)
    assert metrics(result.rows) == {"muscle_mass_kg": 56.11}
    [issue] = result.issues
    assert issue.field == "body.measuregrps[0].measures[2].value"


def test_date_as_numeric_string_and_bad_date() -> None:
    page = _page(_group(_m(70, 1, 0), date=str(DATE)), _group(_m(71, 1, 0), date="today"))
    result = one("withings", "getmeas", page, USER)
    assert result.rows["timestamp"].to_list() == [AT]
    [issue] = result.issues
    assert (issue.record_index, issue.field) == (1, "body.measuregrps[1].date")


def test_error_status_rejects_the_file() -> None:
    result = one("withings", "getmeas", {"status": 401, "error": "invalid_token"}, USER)
    assert result.rows.height == 0
    [issue] = result.issues
    assert (issue.record_index, issue.field) == (None, "body")
    result = one("withings", "getmeas", {"status": 601, "body": {}}, USER)
    [issue] = result.issues
    assert (issue.record_index, issue.field) == (None, "status")


@pytest.mark.parametrize(
    "page", [_page(), {"status": 0, "body": {"measuregrps": None}}, {"measuregrps": []}]
)
def test_empty_pages_give_no_rows(page: dict[str, Any]) -> None:
    result = one("withings", "getmeas", page, USER)
    assert result.rows.height == 0 and result.issues == []


def test_bare_body_is_accepted() -> None:
    rows = flatten("withings", "getmeas", {"measuregrps": [_group(_m(70, 1, 0))]}, USER)
    assert metrics(rows) == {"weight_kg": 70.0}


def test_missing_user_rejects_the_file() -> None:
    result = one("withings", "getmeas", _page(_group(_m(70, 1, 0))))
    [issue] = result.issues
    assert (issue.record_index, issue.field) == (None, "context.user_id")


def test_unknown_group_field_is_drift() -> None:
    result = one("withings", "getmeas", _page(_group(_m(70, 1, 0), brand_new=1)), USER)
    assert result.drift == {"withings:getmeas:measuregrps.brand_new": 1}


def test_detect() -> None:
    measures = json.loads((EXAMPLES / "withings_measures.json").read_text())
    assert resource_of("withings", measures, {}) == "getmeas"
    assert resource_of("withings", measures["body"], {}) == "getmeas"
    notify = (EXAMPLES / "withings_measure_notify.txt").read_text()
    assert resource_of("withings", notify, {}) == "notification"
