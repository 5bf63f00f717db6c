"""The pointer vendors' flatten modules: the vendor-module names, the registry, mixed batches."""

from __future__ import annotations

import json
from types import ModuleType

import polars as pl
import pytest

from tasks.flatten import (
    FLATTENERS,
    FlattenInput,
    fitbit,
    flatten_many,
    oura,
    polar,
    whoop,
    withings,
)
from tasks.flatten.model import NOTIFICATION, POINTER
from tests.flatten.helpers import EXAMPLES

MODULES = (oura, whoop, fitbit, withings, polar)


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.NAME)
def test_module_has_the_vendor_module_names(module: ModuleType) -> None:
    assert module.NAME == module.__name__.rsplit(".", 1)[1]
    assert module.EXPECTED
    assert module.RESOURCES[NOTIFICATION] is POINTER
    flatteners = {f for f in module.RESOURCES.values() if f is not POINTER}
    assert flatteners, "every pointer vendor flattens its fetched documents"
    for resource, flattener in module.RESOURCES.items():
        if flattener is not POINTER:
            assert FLATTENERS[(module.NAME, resource)] is flattener


def test_a_mixed_batch_keeps_each_files_rows_and_lineage() -> None:
    def body(name: str) -> object:
        return json.loads((EXAMPLES / f"{name}.json").read_text())

    oura_user = {"user_id": "o1"}
    items = [
        FlattenInput(0, "oura", "daily_readiness", body("oura_daily_readiness"), oura_user),
        FlattenInput(1, "oura", "sleep", body("oura_sleep"), oura_user),
        FlattenInput(2, "whoop", "recovery", body("whoop_recovery"), {}),
        FlattenInput(3, "withings", "getmeas", body("withings_measures"), {"user_id": "w1"}),
        FlattenInput(4, "polar", "exercise", body("polar_exercise"), {"user_id": "p1"}),
        FlattenInput(5, "fitbit", "hrv", body("fitbit_hrv"), {"user_id": "f1"}),
        FlattenInput(6, "oura", "heartrate", {"data": "oops"}, oura_user),
    ]
    result = flatten_many(items)
    counts = dict(result.rows.group_by("file_no").len().sort("file_no").iter_rows())
    assert counts == {0: 12, 1: 22, 2: 5, 3: 12, 4: 6, 5: 2}
    assert [(i.file_no, i.record_index, i.field) for i in result.issues] == [(6, None, "data")]
    hr = result.rows.filter((pl.col("file_no") == 1) & (pl.col("metric_type") == "heart_rate_bpm"))
    assert set(hr["source_field"]) == {"items"}
    assert set(result.rows.filter(pl.col("file_no") == 2)["user_id"]) == {"48213"}
