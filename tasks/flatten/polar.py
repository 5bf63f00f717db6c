"""Flatten Polar AccessLink fetched documents (spec section 8), and tell what a Polar body is.

``exercise``: one record of ``context["user_id"]`` stamped at its device-local ``start-time``
minus ``start-time-utc-offset`` minutes (a ``start-time`` that carries its own offset is used as
is); its ``duration`` is an ISO 8601 duration, fractional seconds allowed. ``sleep``: one record
per night, stamped at ``sleep_start_time``; the HH:MM-keyed ``hypnogram`` and
``heart_rate_samples`` carry no date and are not flattened. A list of exercises or
``{"nights": [...]}`` gives one record per element.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import polars as pl

from schemas.vendors.fetched import ISO_STAMP_EXPECTED
from schemas.vendors.polar import (
    DURATION_EXPECTED,
    LOCAL_STAMP_EXPECTED,
    PolarRecord,
    PolarValue,
)
from tasks.flatten.documents import (
    CONTEXT_USER,
    DocumentBatch,
    DocumentSpec,
    build_mapping,
    context_user,
    element_issue,
    finish,
    joined,
    page_elements,
    walk_fields,
)
from tasks.flatten.mapping import (
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

NAME = "polar"
EXPECTED = "a pointer {event, user_id, timestamp, url}, a PING, or a fetched exercise or night"
"""What `detect` recognises (the reason of an unrecognised body)."""

USER_FIX = "the fetch stage must pass the notification's user_id as context user_id"
DURATION_FIELD = "duration"
OFFSET_FIELD = "start-time-utc-offset"
SECONDS_PER_MINUTE = 60.0

_NUMBER = r"(\d+(?:[.,]\d+)?)"
ISO_DURATION = rf"^P(?:{_NUMBER}D)?(?:T(?:{_NUMBER}H)?(?:{_NUMBER}M)?(?:{_NUMBER}S)?)?$"
"""``P[nD][T[nH][nM][nS]]`` (days, hours, minutes, seconds; a decimal part on any of them).
Years, months, weeks and negative durations have no fixed length in seconds: refused."""

SPECS: Mapping[str, DocumentSpec] = MappingProxyType(
    {
        "exercise": DocumentSpec(
            stamp="start-time",
            expected_stamp=LOCAL_STAMP_EXPECTED,
            fields={
                DURATION_FIELD: Target("workout_duration_s"),
                "calories": Target("workout_energy_kcal"),
                "distance": Target("workout_distance_m"),
                "heart-rate.average": Target("workout_avg_heart_rate_bpm"),
                "heart-rate.maximum": Target("workout_max_heart_rate_bpm"),
                "training-load": Target("workout_training_load"),
            },
            ignored=frozenset(
                {
                    "id",
                    "upload-time",
                    "polar-user",
                    "transaction-id",
                    "device",
                    "device-id",
                    OFFSET_FIELD,
                    "sport",
                    "detailed-sport-info",
                    "has-route",
                    "running-index",
                    "club-id",
                    "club-name",
                    "fat-percentage",
                    "carbohydrate-percentage",
                    "protein-percentage",
                    "training-load-pro",
                    "heart-rate-zones",
                    "samples",
                }
            ),
        ),
        "sleep": DocumentSpec(
            stamp="sleep_start_time",
            expected_stamp=ISO_STAMP_EXPECTED,
            fields={
                "sleep_score": Target("sleep_score"),
                "light_sleep": Target("sleep_light_s"),
                "deep_sleep": Target("sleep_deep_s"),
                "rem_sleep": Target("sleep_rem_s"),
                "total_interruption_duration": Target("sleep_awake_s"),
            },
            ignored=frozenset(
                {
                    "polar_user",
                    "date",
                    "sleep_end_time",
                    "device_id",
                    "continuity",
                    "continuity_class",
                    "unrecognized_sleep_stage",
                    "sleep_charge",
                    "sleep_goal",
                    "sleep_rating",
                    "short_interruption_duration",
                    "long_interruption_duration",
                    "sleep_cycles",
                    "group_duration_score",
                    "group_solidity_score",
                    "group_regeneration_score",
                    "hypnogram",
                    "heart_rate_samples",
                }
            ),
        ),
    }
)
"""Resource -> how its documents map."""

PAGE_KEYS: Mapping[str, str] = MappingProxyType({"sleep": "nights"})
"""Resource -> the key of a list of its documents (``/v3/users/sleep``)."""

_IDS, MAPPING = build_mapping(SPECS)
MAP_ID: Mapping[str, Mapping[str, int]] = MappingProxyType(_IDS)


@dataclass
class PolarBatch(DocumentBatch):
    """A batch that also keeps each record's ISO ``duration`` text."""

    durations: list[str | None] = field(default_factory=list)


def flatten_batch(items: Sequence[FlattenInput]) -> Flattened:
    """Flatten Polar exercises and nights: one record per document, one value per field."""
    batch = PolarBatch()
    for item in items:
        _walk(batch, item)
    return finish(
        batch,
        record_model=PolarRecord,
        value_model=PolarValue,
        mapping=MAPPING,
        prepare_values=lambda values, records: _with_durations(batch, values),
        describe_extra=_describe_duration,
    )


RESOURCES: Mapping[str, Flattener | None] = MappingProxyType(
    {**dict.fromkeys(SPECS, flatten_batch), NOTIFICATION: POINTER}
)
"""Resource -> its batch flattener; a notification only points at data (POINTER: no rows)."""


def _walk(batch: PolarBatch, item: FlattenInput) -> None:
    spec = SPECS[item.resource]
    user = context_user(batch, item, USER_FIX)
    if user is None:
        return
    expected = f"a Polar {item.resource} document or a list of them"
    elements = page_elements(batch, item, PAGE_KEYS.get(item.resource), expected)
    for record_index, (path, element) in enumerate(elements or ()):
        if type(element) is not dict:
            outcome = "the record was quarantined"
            batch.issues.append(
                element_issue(item, record_index, path, "an object", element, outcome)
            )
            continue
        local_offset = None
        if item.resource == "exercise":
            local_offset = (joined(path, OFFSET_FIELD), _seconds(element.get(OFFSET_FIELD)))
        record = batch.add_document_record(
            item,
            record_index=record_index,
            path=path,
            user=user,
            user_field=CONTEXT_USER,
            stamp_field=spec.stamp,
            stamp=element.get(spec.stamp),
            expected_stamp=spec.expected_stamp,
            local_offset=local_offset,
        )
        duration = element.get(DURATION_FIELD)
        batch.durations.append(duration if type(duration) is str else None)
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


def _seconds(minutes: Any) -> Any:
    """``start-time-utc-offset`` (minutes, a number or numeric string) in seconds; anything
    else as it is (it fails validation)."""
    number: float | None = None
    if type(minutes) in (int, float):
        number = float(minutes)
    elif type(minutes) is str:
        try:
            number = float(minutes)
        except ValueError:
            number = None
    if number is None or not math.isfinite(number):
        return minutes
    return number * SECONDS_PER_MINUTE


def iso_duration_seconds(text: pl.Expr) -> pl.Expr:
    """Seconds of an ISO 8601 duration (``PT1H7M45.5S``); null when it is not one."""
    cleaned = text.str.strip_chars()
    parts = [
        cleaned.str.extract(ISO_DURATION, group).str.replace(",", ".").cast(pl.Float64)
        for group in (1, 2, 3, 4)
    ]
    days, hours, minutes, seconds = (part.fill_null(0.0) for part in parts)
    total = days * 86_400.0 + hours * 3_600.0 + minutes * 60.0 + seconds
    has_part = pl.any_horizontal(*(part.is_not_null() for part in parts))
    valid = cleaned.str.contains(ISO_DURATION) & has_part & ~cleaned.str.ends_with("T")
    return pl.when(valid).then(total)


def _with_durations(batch: PolarBatch, values: pl.DataFrame) -> pl.DataFrame:
    """The ``duration`` value is its ISO 8601 text in seconds (null, so failing, otherwise)."""
    texts = pl.DataFrame(
        {"record_pos": range(len(batch.durations)), "_duration": batch.durations},
        schema={"record_pos": pl.Int64, "_duration": pl.String},
    )
    return (
        values.join(texts, on="record_pos", how="left")
        .with_columns(
            value=pl.when(pl.col("source_field") == DURATION_FIELD)
            .then(iso_duration_seconds(pl.col("_duration")))
            .otherwise(pl.col("value"))
        )
        .drop("_duration")
    )


def _describe_duration(row: dict[str, Any], column: str, path: str) -> Issue | None:
    if row["source_field"] != DURATION_FIELD:
        return None
    field_name = joined(path, DURATION_FIELD)
    found = row["raw"] if row["raw"] is not None else "a bare number (no unit)"
    reason = (
        f"{field_name}: expected {DURATION_EXPECTED}, found {found}; this value is "
        "quarantined, the record's other values were kept"
    )
    return Issue(row["file_no"], row["record_index"], field_name, reason, DURATION_EXPECTED, found)


def detect(payload: Any, headers: Mapping[str, str]) -> str | None:
    """The resource of a Polar body: a notification (or PING), or (where its keys tell) a
    fetched exercise or night; None when it is none of these."""
    if type(payload) is dict and "event" in payload:
        return NOTIFICATION
    for key in PAGE_KEYS.values():
        if type(payload) is dict and type(payload.get(key)) is list:
            payload = payload[key][0] if payload[key] else None
            if type(payload) is not dict:
                return None
            break
    if type(payload) is list and payload and type(payload[0]) is dict:
        payload = payload[0]
    if type(payload) is not dict:
        return None
    if "start-time" in payload:
        return "exercise"
    if "sleep_start_time" in payload:
        return "sleep"
    return None
