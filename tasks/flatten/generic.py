"""Flatten the generic internal shape (spec section 11): every `data` key is one row stamped
with the body's `timestamp`.

A body posted to /webhooks/oura or /webhooks/apple_health (vendor = the route, resource
``generic``) gets that vendor as device_type; vendor ``generic`` takes ``context["device_type"]``
and, when the sender did not say (a body posted to /webhooks/generic), device_type ``generic``.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import MappingProxyType
from typing import Any

import polars as pl

from schemas.canonical import DEVICE_TYPES, GENERIC_DEVICE_TYPE
from schemas.catalogue import CATALOGUE
from schemas.vendors.generic import TIMESTAMP_EXPECTED, GenericEvent, GenericValue
from tasks.flatten.common import (
    Batch,
    Flattened,
    FlattenInput,
    Issue,
    Target,
    assemble,
    file_issue,
    mapping_frame,
    stamp_issue,
    user_issue,
    value_issue,
)

RESOURCE = "generic"
NO_MAP_ID = -1

RENAMED: dict[str, str] = {
    "hrv_balance": "readiness_contributor_hrv_balance",
    "activity_balance": "readiness_contributor_activity_balance",
    "body_temperature": "body_temperature_c",
    "resting_heart_rate": "resting_heart_rate_bpm",
    "respiratory_rate": "respiratory_rate_brpm",
}
"""Legacy `data` keys -> metric_type; any catalogue name maps to itself."""

TOP_LEVEL_KEYS = frozenset({"event_type", "user_id", "timestamp", "data"})

_KEYS: dict[str, str] = {**{name: name for name in CATALOGUE}, **RENAMED}
MAP_ID = MappingProxyType({key: position for position, key in enumerate(_KEYS)})
MAPPING = mapping_frame([Target(metric) for metric in _KEYS.values()])
_KEY_TABLE = pl.DataFrame(
    {"source_field": list(MAP_ID), "map_id": list(MAP_ID.values())},
    schema={"source_field": pl.String, "map_id": pl.Int64},
)


def flatten_batch(items: Sequence[FlattenInput]) -> Flattened:
    """Flatten generic-shape bodies: one record per body, one value per mapped `data` key."""
    batch = Batch()
    prefixes: dict[int, str] = {}
    for item in items:
        _walk(batch, item, prefixes)
    if not batch.file_no:
        return Flattened(rows=Flattened.empty().rows, issues=batch.issues, drift=batch.drift)

    def describe_record(row: dict[str, Any], column: str, check: str) -> Issue:
        position = row["record_pos"]
        if column == "timestamp":
            stamp = batch.stamps[position]
            return stamp_issue(row["file_no"], None, "timestamp", stamp, TIMESTAMP_EXPECTED)
        return user_issue(row["file_no"], None, "user_id", batch.users[position])

    def describe_value(row: dict[str, Any], column: str, check: str) -> Issue:
        field_name = f"data.{row['source_field']}"
        return value_issue(row, field_name)

    rows, issues = assemble(
        records=batch.records_frame(),
        record_model=GenericEvent,
        describe_record=describe_record,
        values=_mapped(batch, prefixes),
        value_model=GenericValue,
        describe_value=describe_value,
        mapping=MAPPING,
    )
    return Flattened(rows=rows, issues=batch.issues + issues, drift=batch.drift)


def _mapped(batch: Batch, prefixes: dict[int, str]) -> pl.DataFrame:
    """The `data` values with their ``map_id``; keys nobody maps are counted as drift."""
    values = (
        batch.values_frame(key_column="source_field")
        .drop("map_id")
        .join(_KEY_TABLE, on="source_field", how="left")
    )
    unknown = values.filter(pl.col("map_id").is_null())
    if unknown.height:
        counts = unknown.group_by("file_no", "source_field").len()
        for file_no, key, count in counts.iter_rows():
            batch.drift[f"{prefixes[file_no]}data.{key}"] += count
    return values.filter(pl.col("map_id").is_not_null())


def _walk(batch: Batch, item: FlattenInput, prefixes: dict[int, str]) -> None:
    payload = item.payload
    if type(payload) is not dict:
        batch.issues.append(
            file_issue(item.file_no, "body", "a JSON object", payload, "post the generic shape")
        )
        return
    data = payload.get("data")
    if type(data) is not dict:
        batch.issues.append(
            file_issue(
                item.file_no,
                "data",
                "an object of metric values",
                data,
                "send the values under a `data` object",
            )
        )
        return
    device_type = _device_type(item)
    if device_type not in DEVICE_TYPES:
        batch.issues.append(
            file_issue(
                item.file_no,
                "context.device_type",
                f"one of {', '.join(DEVICE_TYPES)}",
                device_type,
                "pass the route's vendor as device_type",
            )
        )
        return
    prefix = prefixes[item.file_no] = f"{item.vendor}:{item.resource}:"
    for key in payload.keys() - TOP_LEVEL_KEYS:
        batch.drift[prefix + key] += 1
    record = batch.add_record(
        file_no=item.file_no,
        record_index=0,
        path="",
        user=payload.get("user_id"),
        stamp_field="timestamp",
        stamp=payload.get("timestamp"),
        device_type=device_type,
    )
    batch.add_keyed(record, "data", NO_MAP_ID, data)


def is_generic_shape(payload: Any, *, strict: bool = True) -> bool:
    """Whether `payload` is the generic shape: a `data` object and (`strict`) a user or stamp."""
    if type(payload) is not dict or type(payload.get("data")) is not dict:
        return False
    return not strict or "user_id" in payload or "timestamp" in payload


def _device_type(item: FlattenInput) -> Any:
    if item.vendor != "generic":
        return item.vendor
    return item.context.get("device_type") or GENERIC_DEVICE_TYPE
