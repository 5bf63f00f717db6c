"""Flatten Oura API v2 fetched documents (spec section 3), and tell what an Oura body is.

Each document (or element of a ``{"data": [...], "next_token"}`` page) is one record; the user
comes from ``context["user_id"]`` (the notification's). Sleeps of ``type`` ``deleted`` or
``rest`` give no rows; a sleep's ``heart_rate`` / ``hrv`` series are samples at
``timestamp + i x interval`` (null items skipped).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

from schemas.vendors.fetched import DATE_EXPECTED, ISO_STAMP_EXPECTED
from schemas.vendors.oura import OuraRecord, OuraValue
from tasks.flatten.documents import (
    CONTEXT_USER,
    DocumentBatch,
    DocumentSpec,
    build_mapping,
    context_user,
    contributors,
    element_issue,
    finish,
    flatten_each,
    joined,
    page_elements,
    walk_fields,
)
from tasks.flatten.generic import RESOURCE, is_generic_shape
from tasks.flatten.generic import flatten_batch as generic_batch
from tasks.flatten.mapping import (
    Target,
)
from tasks.flatten.model import (
    NOTIFICATION,
    POINTER,
    Flattened,
    Flattener,
    FlattenInput,
)

NAME = "oura"
EXPECTED = (
    "a pointer {event_type, data_type, object_id, user_id}, a fetched document (or a "
    "page {data: [...]}) or, unsigned, the generic shape {user_id, timestamp, data: {...}}"
)
"""What `detect` recognises (the reason of an unrecognised body)."""

USER_FIX = "the fetch stage must pass the notification's user_id as context"
SIGNATURE_HEADER = "x-oura-signature"
PAGE_KEY = "data"
SKIPPED_SLEEP_TYPES = frozenset({"deleted", "rest"})
_DAILY_IGNORED = frozenset({"id", "day", "meta"})

SPECS: Mapping[str, DocumentSpec] = MappingProxyType(
    {
        "daily_readiness": DocumentSpec(
            stamp="timestamp",
            expected_stamp=ISO_STAMP_EXPECTED,
            fields={
                "score": Target("readiness_score"),
                "temperature_deviation": Target("body_temperature_delta_c"),
                "temperature_trend_deviation": Target("body_temperature_trend_delta_c"),
                **contributors("contributors", "readiness_contributor_"),
            },
            ignored=_DAILY_IGNORED,
        ),
        "daily_sleep": DocumentSpec(
            stamp="timestamp",
            expected_stamp=ISO_STAMP_EXPECTED,
            fields={
                "score": Target("sleep_score"),
                **contributors("contributors", "sleep_contributor_"),
            },
            ignored=_DAILY_IGNORED,
        ),
        "daily_activity": DocumentSpec(
            stamp="timestamp",
            expected_stamp=ISO_STAMP_EXPECTED,
            fields={
                "score": Target("activity_score"),
                "steps": Target("steps"),
                "active_calories": Target("active_energy_kcal"),
                "total_calories": Target("total_energy_kcal"),
                "equivalent_walking_distance": Target("walking_equivalent_distance_m"),
                "high_activity_time": Target("activity_time_high_s"),
                "medium_activity_time": Target("activity_time_medium_s"),
                "low_activity_time": Target("activity_time_low_s"),
                "sedentary_time": Target("sedentary_time_s"),
                **contributors("contributors", "activity_contributor_"),
            },
            ignored=_DAILY_IGNORED
            | {
                "class_5_min",
                "average_met_minutes",
                "high_activity_met_minutes",
                "medium_activity_met_minutes",
                "low_activity_met_minutes",
                "sedentary_met_minutes",
                "inactivity_alerts",
                "met",
                "meters_to_target",
                "non_wear_time",
                "resting_time",
                "target_calories",
                "target_meters",
            },
        ),
        "sleep": DocumentSpec(
            stamp="bedtime_start",
            expected_stamp=ISO_STAMP_EXPECTED,
            fields={
                "average_hrv": Target("sleep_avg_hrv_rmssd_ms"),
                "average_heart_rate": Target("sleep_avg_heart_rate_bpm"),
                "lowest_heart_rate": Target("sleep_lowest_heart_rate_bpm"),
                "average_breath": Target("respiratory_rate_brpm"),
                "total_sleep_duration": Target("sleep_duration_s"),
                "deep_sleep_duration": Target("sleep_deep_s"),
                "light_sleep_duration": Target("sleep_light_s"),
                "rem_sleep_duration": Target("sleep_rem_s"),
                "awake_time": Target("sleep_awake_s"),
                "time_in_bed": Target("time_in_bed_s"),
                "latency": Target("sleep_latency_s"),
                "efficiency": Target("sleep_efficiency_pct"),
            },
            ignored=_DAILY_IGNORED
            | {
                "type",
                "bedtime_end",
                "low_battery_alert",
                "movement_30_sec",
                "period",
                "readiness",
                "readiness_score_delta",
                "restless_periods",
                "sleep_phase_5_min",
                "app_sleep_phase_5_min",
                "sleep_score_delta",
                "sleep_algorithm_version",
                "sleep_analysis_reason",
                "ring_id",
            },
            handled=frozenset({"heart_rate", "hrv"}),
        ),
        "heartrate": DocumentSpec(
            stamp="timestamp",
            expected_stamp=ISO_STAMP_EXPECTED,
            fields={"bpm": Target("heart_rate_bpm")},
            ignored=frozenset({"source", "timestamp_unix"}),
        ),
        "daily_spo2": DocumentSpec(
            stamp="day",
            expected_stamp=DATE_EXPECTED,
            fields={"spo2_percentage.average": Target("spo2_pct")},
            ignored=frozenset({"id", "meta", "breathing_disturbance_index"}),
        ),
    }
)
"""Resource (the REST data type) -> how its documents map."""

SAMPLES: Mapping[str, Mapping[str, Target]] = MappingProxyType(
    {"sleep": {"heart_rate": Target("heart_rate_bpm"), "hrv": Target("hrv_rmssd_ms")}}
)
"""Resource -> its sample series fields."""


_SERIES_KEY = "#series"
_IDS, MAPPING = build_mapping(
    {
        **SPECS,
        **{
            resource + _SERIES_KEY: DocumentSpec(
                stamp="timestamp", expected_stamp=ISO_STAMP_EXPECTED, fields=dict(series)
            )
            for resource, series in SAMPLES.items()
        },
    }
)
MAP_ID: Mapping[str, Mapping[str, int]] = MappingProxyType(_IDS)


def flatten_batch(items: Sequence[FlattenInput]) -> Flattened:
    """Flatten Oura documents and pages: one record per document, one value per field."""
    batch = flatten_each(items, _walk)
    return finish(batch, record_model=OuraRecord, value_model=OuraValue, mapping=MAPPING)


RESOURCES: Mapping[str, Flattener | None] = MappingProxyType(
    {**dict.fromkeys(SPECS, flatten_batch), NOTIFICATION: POINTER, RESOURCE: generic_batch}
)
"""Resource -> its batch flattener; a notification only points at data (POINTER: no rows)."""


def _walk(batch: DocumentBatch, item: FlattenInput) -> None:
    spec = SPECS[item.resource]
    user = context_user(batch, item, USER_FIX)
    if user is None:
        return
    expected = 'an Oura document or a page {"data": [...], "next_token": ...}'
    elements = page_elements(batch, item, PAGE_KEY, expected)
    for record_index, (path, element) in enumerate(elements or ()):
        if type(element) is not dict:
            outcome = "the record was quarantined"
            batch.issues.append(
                element_issue(item, record_index, path, "an object", element, outcome)
            )
            continue
        kind = element.get("type")
        if type(kind) is str and kind in SKIPPED_SLEEP_TYPES and item.resource == "sleep":
            continue
        record = batch.add_document_record(
            item,
            record_index=record_index,
            path=path,
            user=user,
            user_field=CONTEXT_USER,
            stamp_field=spec.stamp,
            stamp=element.get(spec.stamp),
            expected_stamp=spec.expected_stamp,
        )
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
        series_ids = MAP_ID.get(item.resource + _SERIES_KEY, {})
        for name, map_id in series_ids.items():
            series = element.get(name)
            _add_series(batch, item, record_index, joined(path, name), series, map_id, user)


def _add_series(
    batch: DocumentBatch,
    item: FlattenInput,
    record_index: int,
    path: str,
    series: Any,
    map_id: int,
    user: Any,
) -> None:
    """One sample series ``{interval, items[], timestamp}`` as a record of its own."""
    if series is None:
        return
    items = series.get("items") if type(series) is dict else None
    if type(items) is not list:
        if type(series) is dict and items is None:
            return
        batch.issues.append(
            element_issue(
                item,
                record_index,
                path,
                "a sample series {interval, items: [...], timestamp}",
                series,
                "these samples were skipped, the record's other values kept",
            )
        )
        return
    if not any(value is not None for value in items):
        return
    record = batch.add_document_record(
        item,
        record_index=record_index,
        path=path,
        user=user,
        user_field=CONTEXT_USER,
        stamp_field="timestamp",
        stamp=series.get("timestamp"),
        expected_stamp=ISO_STAMP_EXPECTED,
        interval=series.get("interval"),
        is_samples=True,
    )
    batch.add_keyed(record, "items", map_id, dict(enumerate(items)))


def detect(payload: Any, headers: Mapping[str, str]) -> str | None:
    """The resource of an Oura body: the generic shape (unsigned), a notification, or (where
    its keys tell) a fetched document; None when it is none of these.

    `headers` have lower-case names. A fetched document's resource normally comes from its
    landing metadata; this only recognises the shapes that are unambiguous.
    """
    if is_generic_shape(payload) and SIGNATURE_HEADER not in headers:
        return "generic"
    if type(payload) is not dict:
        return None
    if {"event_type", "data_type"} <= payload.keys():
        return NOTIFICATION
    page = payload.get(PAGE_KEY)
    if type(page) is list:
        first = page[0] if page else None
        return _document_kind(first) if type(first) is dict else None
    return _document_kind(payload)


def _document_kind(document: dict[str, Any]) -> str | None:
    if "bpm" in document:
        return "heartrate"
    if "bedtime_start" in document:
        return "sleep"
    if "spo2_percentage" in document:
        return "daily_spo2"
    if "temperature_deviation" in document or "temperature_trend_deviation" in document:
        return "daily_readiness"
    if "steps" in document or "active_calories" in document:
        return "daily_activity"
    parts = document.get("contributors")
    if type(parts) is dict and "timestamp" in document:
        if parts.keys() & {"deep_sleep", "rem_sleep", "total_sleep", "restfulness"}:
            return "daily_sleep"
        if parts.keys() & {"hrv_balance", "recovery_index", "previous_night"}:
            return "daily_readiness"
    return None
