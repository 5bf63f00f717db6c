"""The flatten stage against the vendor examples and its public contract."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from schemas.canonical import CANONICAL_SCHEMA, ROW_COLUMNS
from tasks.flatten import (
    FlattenInput,
    flatten,
    flatten_many,
)
from tests.flatten.helpers import (
    EXAMPLES,
    FLATTENED_VENDORS,
    assert_same_rows,
    expected_files,
    garmin_dailies,
    generic_body,
    one,
)


@pytest.mark.parametrize("expected_file", expected_files(), ids=lambda p: p.name.split(".")[0])
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
    vendors = {json.loads(f.read_text())["vendor"] for f in expected_files()}
    assert vendors == FLATTENED_VENDORS


def test_flatten_returns_the_public_columns_and_dtypes() -> None:
    rows = flatten("oura", "generic", generic_body())
    assert rows.schema == pl.Schema({c: CANONICAL_SCHEMA[c] for c in ROW_COLUMNS})


def test_flatten_many_keeps_lineage_columns() -> None:
    items = [
        FlattenInput(7, "oura", "generic", generic_body(), {}),
        FlattenInput(8, "garmin", "push", garmin_dailies(), {}),
    ]
    result = flatten_many(items)
    assert result.rows.schema == pl.Schema(CANONICAL_SCHEMA)
    assert set(result.rows["file_no"]) == {7, 8}
    generic_rows = result.rows.filter(pl.col("file_no") == 7)
    assert set(generic_rows["record_index"]) == {0}
    assert "resting_heart_rate" in set(generic_rows["source_field"])
    garmin_fields = set(result.rows.filter(pl.col("file_no") == 8)["source_field"])
    assert "restingHeartRateInBeatsPerMinute" in garmin_fields
