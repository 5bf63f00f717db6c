"""Physical bounds per metric (issue 12, Why 6: negative heart rates and a readiness score of 250
loaded as rows): out-of-bounds values are quarantined with a reason naming the bound, and no
valid vendor example is rejected."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import polars as pl
import pytest

from schemas.canonical import CANONICAL_SCHEMA
from schemas.catalogue import BOUNDS, CATALOGUE
from tasks.flatten.validate import validate_canonical
from tests.helpers import EXAMPLES


def rows(*values: tuple[str, float]) -> pl.DataFrame:
    return pl.DataFrame(
        [
            {
                "user_id": "u1",
                "device_type": "oura",
                "metric_type": metric,
                "value": value,
                "unit": CATALOGUE[metric],
                "timestamp": datetime(2026, 11, 1, tzinfo=UTC),
                "file_no": 0,
                "record_index": i,
                "source_field": f"data.{metric}",
            }
            for i, (metric, value) in enumerate(values)
        ],
        schema=CANONICAL_SCHEMA,
    )


def test_every_metric_has_ordered_bounds() -> None:
    assert set(BOUNDS) == set(CATALOGUE)
    assert all(lo < hi for lo, hi in BOUNDS.values())
    for metric, unit in CATALOGUE.items():
        lo, hi = BOUNDS[metric]
        if unit in ("pct", "score") and "strain" not in metric and "load" not in metric:
            assert (lo, hi) == (0, 100), metric
        if unit == "s":
            assert lo == 0, metric
        if unit == "bpm":
            assert lo > 0, metric


@pytest.mark.parametrize(
    ("metric", "value", "bound"),
    [
        ("heart_rate_bpm", -5.0, "between 20 and 300 bpm"),
        ("resting_heart_rate_bpm", 900.0, "between 20 and 300 bpm"),
        ("readiness_score", 250.0, "between 0 and 100 score"),
        ("spo2_pct", 101.0, "between 0 and 100 pct"),
        ("sleep_duration_s", -1.0, "between 0 and 604800 s"),
        ("day_strain_score", 22.0, "between 0 and 21 score"),
    ],
)
def test_an_implausible_value_is_quarantined_naming_the_bound(
    metric: str, value: float, bound: str
) -> None:
    valid, issues = validate_canonical(rows((metric, value), ("steps", 1000.0)))
    assert valid["metric_type"].to_list() == ["steps"]
    assert len(issues) == 1
    assert bound in issues[0].reason and "metric_catalogue.json" in issues[0].reason
    assert issues[0].record_index == 0


def test_edges_of_the_bounds_are_valid() -> None:
    valid, issues = validate_canonical(
        rows(("readiness_score", 0.0), ("readiness_score", 100.0), ("heart_rate_bpm", 20.0))
    )
    assert not issues and valid.height == 3


def test_no_vendor_example_row_is_out_of_bounds() -> None:
    checked = 0
    for path in sorted(EXAMPLES.glob("*.expected.json")):
        for row in json.loads(path.read_text()).get("rows", []):
            lo, hi = BOUNDS[row["metric_type"]]
            assert lo <= float(row["value"]) <= hi, (path.name, row)
            checked += 1
    assert checked > 150
