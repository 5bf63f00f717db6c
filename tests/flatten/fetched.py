"""Helpers of the pointer vendors' flatten tests: their examples, end to end through `flatten`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl

from schemas.canonical import ROW_COLUMNS
from schemas.catalogue import CATALOGUE
from tasks.flatten import flatten
from tests.flatten.helpers import EXAMPLE_RESOURCES, EXAMPLES, assert_same_rows, one


def examples_of(vendor: str) -> list[Path]:
    """The `.expected.json` files of one vendor."""
    files = sorted(EXAMPLES.glob("*.expected.json"))
    return [f for f in files if json.loads(f.read_text())["vendor"] == vendor]


def example_payload(expected: dict[str, Any]) -> Any:
    """The example's body: parsed JSON, or the text of a form body (`.txt`)."""
    path = EXAMPLES / expected["payload_file"]
    return json.loads(path.read_text()) if path.suffix == ".json" else path.read_text()


def check_example(expected_file: Path) -> None:
    """`flatten(vendor, resource, payload, context)` gives exactly the expected rows, with no
    issue and no drift (every key of the examples is mapped or deliberately ignored)."""
    expected = json.loads(expected_file.read_text())
    vendor = expected["vendor"]
    resource = EXAMPLE_RESOURCES.get((vendor, expected["resource"]), expected["resource"])
    payload = example_payload(expected)
    context = expected.get("context") or {}

    rows = flatten(vendor, resource, payload, context)
    result = one(vendor, resource, payload, context)

    assert rows.columns == list(ROW_COLUMNS)
    assert len(expected["rows"]) == expected["row_count"]
    assert_same_rows(rows, expected["rows"])
    assert result.issues == []
    assert not result.drift
    assert_catalogue_rows(rows)


def assert_catalogue_rows(rows: pl.DataFrame) -> None:
    """Every row's metric is in the catalogue, in the catalogue's unit."""
    for metric, unit in rows.select("metric_type", "unit").unique().iter_rows():
        assert CATALOGUE.get(metric) == unit, (metric, unit)


def assert_mapping_in_catalogue(mapping: pl.DataFrame) -> None:
    """Every target of a vendor's mapping table is a catalogue metric in its unit."""
    assert mapping.height
    assert_catalogue_rows(mapping)


def by_metric(rows: pl.DataFrame) -> dict[str, list[float]]:
    """metric_type -> its values, sorted (several rows may share a metric)."""
    found: dict[str, list[float]] = {}
    for metric, value in rows.select("metric_type", "value").iter_rows():
        found.setdefault(metric, []).append(value)
    return {metric: sorted(values) for metric, values in found.items()}
