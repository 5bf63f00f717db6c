"""Flatten WHOOP API v2 fetched records (spec section 4), and tell what a WHOOP body is.

Each record (or element of a ``{"records": [...], "next_token"}`` page) is one record with its
own ``user_id`` (``context["user_id"]`` only when a record lacks one). Only
``score_state = "SCORED"`` records give rows (``PENDING_SCORE``, ``UNSCORABLE`` and anything
else: none). A workout's duration is ``end - start``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import polars as pl

from schemas.vendors.fetched import ISO_STAMP_EXPECTED
from schemas.vendors.whoop import DURATION_FIELD, WhoopRecord, WhoopValue
from tasks.flatten.documents import (
    CONTEXT_USER,
    DocumentBatch,
    DocumentSpec,
    build_mapping,
    element_issue,
    finish,
    joined,
    page_elements,
    walk_fields,
)
from tasks.flatten.mapping import (
    KJ_TO_KCAL,
    MS_TO_S,
    Target,
)
from tasks.flatten.model import (
    NOTIFICATION,
    POINTER,
    Flattened,
    Flattener,
    FlattenInput,
    Issue,
)
from tasks.flatten.timestamps import (
    timestamps,
)
from tasks.flatten.values import (
    excerpt,
)

NAME = "whoop"
EXPECTED = (
    "a pointer {user_id, id, type, trace_id} or a fetched record (or a page {records: [...]})"
)
"""What `detect` recognises (the reason of an unrecognised body)."""

PAGE_KEY = "records"
SCORED = "SCORED"
_COMMON_IGNORED = frozenset(
    {"id", "v1_id", "user_id", "created_at", "updated_at", "timezone_offset", "score_state"}
)
_ZONES = ("zero", "one", "two", "three", "four", "five")

SPECS: Mapping[str, DocumentSpec] = MappingProxyType(
    {
        "recovery": DocumentSpec(
            stamp="created_at",
            expected_stamp=ISO_STAMP_EXPECTED,
            fields={
                "score.recovery_score": Target("recovery_score_pct"),
                "score.resting_heart_rate": Target("resting_heart_rate_bpm"),
                "score.hrv_rmssd_milli": Target("hrv_rmssd_ms"),
                "score.spo2_percentage": Target("spo2_pct"),
                "score.skin_temp_celsius": Target("skin_temperature_c"),
            },
            ignored=(_COMMON_IGNORED - {"created_at"})
            | {"cycle_id", "sleep_id", "score.user_calibrating"},
        ),
        "sleep": DocumentSpec(
            stamp="start",
            expected_stamp=ISO_STAMP_EXPECTED,
            fields={
                "score.respiratory_rate": Target("respiratory_rate_brpm"),
                "score.sleep_performance_percentage": Target("sleep_performance_pct"),
                "score.sleep_consistency_percentage": Target("sleep_consistency_pct"),
                "score.sleep_efficiency_percentage": Target("sleep_efficiency_pct"),
                "score.stage_summary.total_in_bed_time_milli": Target("time_in_bed_s", MS_TO_S),
                "score.stage_summary.total_awake_time_milli": Target("sleep_awake_s", MS_TO_S),
                "score.stage_summary.total_light_sleep_time_milli": Target(
                    "sleep_light_s", MS_TO_S
                ),
                "score.stage_summary.total_slow_wave_sleep_time_milli": Target(
                    "sleep_deep_s", MS_TO_S
                ),
                "score.stage_summary.total_rem_sleep_time_milli": Target("sleep_rem_s", MS_TO_S),
                "score.stage_summary.sleep_cycle_count": Target("sleep_cycles_count"),
                "score.stage_summary.disturbance_count": Target("sleep_disturbances_count"),
            },
            ignored=_COMMON_IGNORED
            | {
                "cycle_id",
                "end",
                "nap",
                "score.sleep_needed",
                "score.stage_summary.total_no_data_time_milli",
            },
        ),
        "cycle": DocumentSpec(
            stamp="start",
            expected_stamp=ISO_STAMP_EXPECTED,
            fields={
                "score.strain": Target("day_strain_score"),
                "score.kilojoule": Target("total_energy_kcal", KJ_TO_KCAL),
                "score.average_heart_rate": Target("heart_rate_avg_bpm"),
                "score.max_heart_rate": Target("heart_rate_max_bpm"),
            },
            ignored=_COMMON_IGNORED | {"end"},
        ),
        "workout": DocumentSpec(
            stamp="start",
            expected_stamp=ISO_STAMP_EXPECTED,
            fields={
                DURATION_FIELD: Target("workout_duration_s"),
                "score.strain": Target("workout_strain_score"),
                "score.average_heart_rate": Target("workout_avg_heart_rate_bpm"),
                "score.max_heart_rate": Target("workout_max_heart_rate_bpm"),
                "score.kilojoule": Target("workout_energy_kcal", KJ_TO_KCAL),
                "score.distance_meter": Target("workout_distance_m"),
                "score.altitude_gain_meter": Target("workout_altitude_gain_m"),
                **{
                    f"score.zone_durations.zone_{name}_milli": Target(
                        f"workout_hr_zone_{number}_s", MS_TO_S
                    )
                    for number, name in enumerate(_ZONES)
                },
            },
            ignored=_COMMON_IGNORED
            | {"sport_id", "sport_name", "score.percent_recorded", "score.altitude_change_meter"},
        ),
    }
)
"""Resource -> how its records map (``end`` of a workout: its duration, ``end - start``)."""

_IDS, MAPPING = build_mapping(SPECS)
MAP_ID: Mapping[str, Mapping[str, int]] = MappingProxyType(_IDS)


@dataclass
class WhoopBatch(DocumentBatch):
    """A batch that also keeps each record's ``end`` (for a workout's duration)."""

    ends: list[Any] = field(default_factory=list)


def flatten_batch(items: Sequence[FlattenInput]) -> Flattened:
    """Flatten WHOOP records and pages: one record per scored record, one value per field."""
    batch = WhoopBatch()
    for item in items:
        _walk(batch, item)
    return finish(
        batch,
        record_model=WhoopRecord,
        value_model=WhoopValue,
        mapping=MAPPING,
        prepare_values=lambda values, records: _with_durations(batch, values, records),
        describe_extra=_describe_duration,
    )


RESOURCES: Mapping[str, Flattener | None] = MappingProxyType(
    {**dict.fromkeys(SPECS, flatten_batch), NOTIFICATION: POINTER}
)
"""Resource -> its batch flattener; a notification only points at data (POINTER: no rows)."""


def _walk(batch: WhoopBatch, item: FlattenInput) -> None:
    spec = SPECS[item.resource]
    expected = 'a WHOOP record or a page {"records": [...], "next_token": ...}'
    elements = page_elements(batch, item, PAGE_KEY, expected)
    for record_index, (path, element) in enumerate(elements or ()):
        if type(element) is not dict:
            outcome = "the record was quarantined"
            batch.issues.append(
                element_issue(item, record_index, path, "an object", element, outcome)
            )
            continue
        if element.get("score_state") != SCORED:
            continue
        user, user_field = element.get("user_id"), joined(path, "user_id")
        if user is None and item.context.get("user_id") is not None:
            user, user_field = item.context["user_id"], CONTEXT_USER
        record = batch.add_document_record(
            item,
            record_index=record_index,
            path=path,
            user=user,
            user_field=user_field,
            stamp_field=spec.stamp,
            stamp=element.get(spec.stamp),
            expected_stamp=spec.expected_stamp,
        )
        batch.ends.append(element.get(DURATION_FIELD))
        walk_fields(
            batch,
            item,
            spec=spec,
            ids=MAP_ID[item.resource],
            record=record,
            record_index=record_index,
            path=path,
            element=element,
        )


def _with_durations(batch: WhoopBatch, values: pl.DataFrame, records: pl.DataFrame) -> pl.DataFrame:
    """A workout's ``end`` value becomes ``end - start`` in seconds (null when unreadable)."""
    ends = pl.DataFrame(
        {"record_pos": range(len(batch.ends)), "_end": timestamps(batch.ends)},
        schema={"record_pos": pl.Int64, "_end": records.schema["timestamp"]},
    )
    stamps = records.select("record_pos", pl.col("timestamp").alias("_start")).join(
        ends, on="record_pos", how="left"
    )
    seconds = (pl.col("_end") - pl.col("_start")).dt.total_microseconds() / 1_000_000
    return (
        values.join(stamps, on="record_pos", how="left")
        .with_columns(
            value=pl.when(pl.col("source_field") == DURATION_FIELD)
            .then(seconds.cast(pl.Float64))
            .otherwise(pl.col("value"))
        )
        .drop("_start", "_end")
    )


def _describe_duration(row: dict[str, Any], column: str, path: str) -> Issue | None:
    if row["source_field"] != DURATION_FIELD:
        return None
    field_name = joined(path, DURATION_FIELD)
    expected = "an ISO 8601 date-time with a UTC offset, at or after start"
    found = row["raw"] if row["raw"] is not None else excerpt(row["value"])
    reason = (
        f"{field_name}: expected {expected}, found {found}; the workout's duration "
        "(end - start) is quarantined, the record's other values were kept"
    )
    return Issue(row["file_no"], row["record_index"], field_name, reason, expected, found)


def detect(payload: Any, headers: Mapping[str, str]) -> str | None:
    """The resource of a WHOOP body: a notification, or (where its keys tell) a fetched record;
    None when it is neither."""
    if type(payload) is not dict:
        return None
    if {"type", "id"} <= payload.keys():
        return NOTIFICATION
    page = payload.get(PAGE_KEY)
    if type(page) is list:
        first = page[0] if page else None
        return _record_kind(first) if type(first) is dict else None
    return _record_kind(payload)


def _record_kind(record: dict[str, Any]) -> str | None:
    if "score_state" not in record:
        return None
    if "sleep_id" in record:
        return "recovery"
    if "sport_id" in record or "sport_name" in record:
        return "workout"
    if "nap" in record:
        return "sleep"
    if "start" in record:
        return "cycle"
    return None
