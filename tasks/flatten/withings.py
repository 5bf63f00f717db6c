"""Flatten Withings ``Measure - Getmeas`` pages (spec section 7), and tell what a Withings body is.

A page (one fetched document; paging is the fetcher's job) holds ``body.measuregrps``. A group
of ``category`` 1 (a real measurement; 2 is a user goal) whose ``attrib`` is not 1 (the device
could not tell whose it was) is one record of ``context["user_id"]`` stamped at its ``date``;
each measure of a mapped ``type`` is one value, ``value x 10^unit``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any
from urllib.parse import parse_qs

import polars as pl

from schemas.vendors.fetched import EPOCH_EXPECTED
from schemas.vendors.withings import MAX_EXPONENT, WithingsGroup, WithingsMeasure
from tasks.flatten.documents import (
    CONTEXT_USER,
    DocumentBatch,
    context_user,
    element_issue,
    finish,
    flatten_each,
)
from tasks.flatten.issues import (
    file_issue,
)
from tasks.flatten.mapping import (
    Target,
    mapping_frame,
)
from tasks.flatten.model import (
    NOTIFICATION,
    POINTER,
    Flattened,
    Flattener,
    FlattenInput,
    Issue,
)
from tasks.flatten.values import (
    excerpt,
)

NAME = "withings"
EXPECTED = (
    "a form pointer userid=...&appli=...&startdate=...&enddate=... or a Getmeas page "
    "{status, body: {measuregrps: [...]}}"
)
"""What `detect` recognises (the reason of an unrecognised body)."""

RESOURCE = "getmeas"
USER_FIX = "the fetch stage must pass the notification's userid as context user_id"
STAMP_FIELD = "date"
MEASUREMENT = 1
GOAL = 2
AMBIGUOUS_ATTRIB = 1
EXPONENT = "exponent"
EXPONENT_RAW = "exponent_raw"

MEASURE_TYPES: Mapping[int, str] = MappingProxyType(
    {
        1: "weight_kg",
        4: "height_m",
        5: "fat_free_mass_kg",
        6: "body_fat_pct",
        8: "fat_mass_kg",
        9: "blood_pressure_diastolic_mmhg",
        10: "blood_pressure_systolic_mmhg",
        11: "heart_rate_bpm",
        12: "body_temperature_c",
        71: "body_temperature_c",
        54: "spo2_pct",
        73: "skin_temperature_c",
        76: "muscle_mass_kg",
        77: "hydration_kg",
        88: "bone_mass_kg",
        91: "pulse_wave_velocity_m_s",
        123: "vo2_max_ml_kg_min",
    }
)
"""Withings measure type -> metric_type (already in the catalogue unit once scaled); other
types are ignored (spec)."""

MAP_ID: Mapping[int, int] = MappingProxyType(
    {measure_type: n for n, measure_type in enumerate(MEASURE_TYPES)}
)
MAPPING = mapping_frame([Target(metric) for metric in MEASURE_TYPES.values()])

GROUP_KEYS = frozenset(
    {
        "grpid",
        "attrib",
        "date",
        "created",
        "modified",
        "category",
        "deviceid",
        "hash_deviceid",
        "model",
        "model_id",
        "measures",
        "comment",
        "timezone",
        "is_inconclusive",
    }
)
"""Group fields Withings documents; anything else is drift."""


def flatten_batch(items: Sequence[FlattenInput]) -> Flattened:
    """Flatten Getmeas pages: one record per measurement group, one value per measure."""
    batch = flatten_each(items, _walk)
    batch.chunk_text.setdefault(EXPONENT, [])
    return finish(
        batch,
        record_model=WithingsGroup,
        value_model=WithingsMeasure,
        mapping=MAPPING,
        prepare_values=_scaled,
        describe_extra=_describe_exponent,
    )


RESOURCES: Mapping[str, Flattener | None] = MappingProxyType(
    {RESOURCE: flatten_batch, NOTIFICATION: POINTER}
)
"""Resource -> its batch flattener; a notification only points at data (POINTER: no rows)."""


def _walk(batch: DocumentBatch, item: FlattenInput) -> None:
    batch.chunk_text.setdefault(EXPONENT, [])
    groups = _groups(batch, item)
    if not groups:
        return
    user = context_user(batch, item, USER_FIX)
    if user is None:
        return
    for record_index, group in enumerate(groups):
        path = f"body.measuregrps[{record_index}]"
        if type(group) is not dict:
            outcome = "the record was quarantined"
            batch.issues.append(
                element_issue(item, record_index, path, "an object", group, outcome)
            )
            continue
        if not _is_measurement(batch, item, record_index, path, group):
            continue
        for key in group.keys() - GROUP_KEYS:
            batch.drift[f"{item.vendor}:{item.resource}:measuregrps.{key}"] += 1
        record = batch.add_document_record(
            item,
            record_index=record_index,
            path=path,
            user=user,
            user_field=CONTEXT_USER,
            stamp_field=STAMP_FIELD,
            stamp=group.get(STAMP_FIELD),
            expected_stamp=EPOCH_EXPECTED,
        )
        _add_measures(batch, item, record_index, path, record, group.get("measures"))


def _groups(batch: DocumentBatch, item: FlattenInput) -> list[Any] | None:
    """The page's measure groups; an issue when the body is not a (successful) Getmeas page."""
    payload = item.payload
    fix = "only Withings Getmeas responses belong here"
    if type(payload) is dict and "body" in payload:
        status = payload.get("status")
        if status is not None and _number(status) != 0:
            expected = "status 0 (success)"
            fix = "Withings answered with an error: the fetch should retry or re-authorise"
            batch.issues.append(file_issue(item.file_no, "status", expected, status, fix))
            return None
        payload = payload["body"]
    if type(payload) is not dict or "measuregrps" not in payload:
        expected = 'a Getmeas response {"status": 0, "body": {"measuregrps": [...]}}'
        batch.issues.append(file_issue(item.file_no, "body", expected, payload, fix))
        return None
    groups = payload["measuregrps"]
    if groups is None:
        return []
    if type(groups) is not list:
        field_name = "body.measuregrps"
        batch.issues.append(file_issue(item.file_no, field_name, "a list", groups, fix))
        return None
    return groups


def _is_measurement(
    batch: DocumentBatch, item: FlattenInput, record_index: int, path: str, group: dict[str, Any]
) -> bool:
    """Category 1 and an attributed user: flattened. Goals and ambiguous groups: silently not."""
    category = _number(group.get("category"))
    if category == GOAL or _number(group.get("attrib")) == AMBIGUOUS_ATTRIB:
        return False
    if category != MEASUREMENT:
        batch.issues.append(
            element_issue(
                item,
                record_index,
                f"{path}.category",
                "1 (a measurement) or 2 (a user goal)",
                group.get("category"),
                "the record was quarantined",
            )
        )
        return False
    return True


def _add_measures(
    batch: DocumentBatch,
    item: FlattenInput,
    record_index: int,
    path: str,
    record: int,
    measures: Any,
) -> None:
    if measures is None:
        return
    if type(measures) is not list:
        outcome = "the group's measures were skipped"
        field_name = f"{path}.measures"
        batch.issues.append(
            element_issue(item, record_index, field_name, "a list", measures, outcome)
        )
        return
    for position, measure in enumerate(measures):
        if type(measure) is not dict:
            continue
        measure_type = _number(measure.get("type"))
        if measure_type is None or not measure_type.is_integer():
            continue  # no type we map: ignored (spec)
        map_id = MAP_ID.get(int(measure_type))
        if map_id is None:
            continue
        source_field = f"measures[{position}].value"
        if batch.add_value(record, source_field, map_id, measure.get("value")):
            batch.chunk_text[EXPONENT].append(_text(measure.get("unit")))


def _number(value: Any) -> float | None:
    """A JSON number or numeric string as a float (None for anything else)."""
    if type(value) in (int, float):
        number = float(value)
    elif type(value) is str:
        try:
            number = float(value)
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if type(value) in (int, float, str):
        return str(value)
    return excerpt(value)


def _scaled(values: pl.DataFrame, records: pl.DataFrame) -> pl.DataFrame:
    """``value x 10^unit`` (dividing for negative powers keeps decimals exact); a measure with
    an unusable unit keeps its value and fails on its exponent."""
    exponent = pl.col(EXPONENT)
    value = pl.col("value")
    usable = (exponent.round() == exponent) & (exponent.abs() <= MAX_EXPONENT)
    scaled = (
        pl.when(exponent < 0)
        .then(value / pl.lit(10.0).pow(-exponent))
        .otherwise(value * pl.lit(10.0).pow(exponent))
    )
    return values.with_columns(
        pl.col(EXPONENT).alias(EXPONENT_RAW),
        pl.col(EXPONENT).str.strip_chars().cast(pl.Float64, strict=False),
    ).with_columns(value=pl.when(usable.fill_null(False)).then(scaled).otherwise(value))


def _describe_exponent(row: dict[str, Any], column: str, path: str) -> Issue | None:
    if column != EXPONENT:
        return None
    field_name = f"{path}.{row['source_field'].removesuffix('.value')}.unit"
    expected = "an integer power of ten (the real value is value x 10^unit)"
    raw = row[EXPONENT_RAW]
    found = "nothing (missing)" if raw is None else raw
    reason = f"{field_name}: expected {expected}, found {found}; this measure is quarantined"
    return Issue(row["file_no"], row["record_index"], field_name, reason, expected, found)


def detect(payload: Any, headers: Mapping[str, str]) -> str | None:
    """The resource of a Withings body: a Getmeas page, or the form notification; None when
    it is neither."""
    if type(payload) is dict:
        body = payload.get("body")
        if "measuregrps" in payload or (type(body) is dict and "measuregrps" in body):
            return RESOURCE
    if isinstance(payload, bytes | bytearray):
        payload = payload.decode("utf-8", errors="replace")
    if type(payload) is str:
        payload = parse_qs(payload)
    if type(payload) is dict and "userid" in payload:
        return NOTIFICATION
    return None
