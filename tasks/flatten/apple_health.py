"""Flatten Health Auto Export (HAE) REST bodies (spec section 9).

Each metric data point and each workout is one record; the user comes from
``context["user_id"]`` (the body carries none). Units are converted to the catalogue unit; a unit
HAE is not known to send for that metric is quarantined, never guessed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

from schemas.vendors.apple_health import (
    ACCEPTED_UNITS,
    DATE_EXPECTED,
    WORKOUT_PREFIX,
    HaeRecord,
    HaeValue,
)
from tasks.flatten import generic
from tasks.flatten.columns import Batch
from tasks.flatten.issues import file_issue, stamp_issue, value_issue
from tasks.flatten.mapping import (
    F_TO_C,
    G_TO_KG,
    H_TO_S,
    KJ_TO_KCAL,
    KM_TO_M,
    LB_TO_KG,
    MI_TO_M,
    MIN_TO_S,
    SAME,
    Conversion,
    Target,
    mapping_frame,
)
from tasks.flatten.model import Flattened, Flattener, FlattenInput, Issue
from tasks.flatten.validate import assemble
from tasks.flatten.values import excerpt

NAME = DEVICE_TYPE = "apple_health"
USER_FIX = "set the X-User-Id header in Health Auto Export's REST API automation"

FIELDS: Mapping[str, Mapping[str, str]] = MappingProxyType(
    {
        "heart_rate": {
            "Min": "heart_rate_min_bpm",
            "Avg": "heart_rate_avg_bpm",
            "Max": "heart_rate_max_bpm",
        },
        "resting_heart_rate": {"qty": "resting_heart_rate_bpm"},
        "heart_rate_variability": {"qty": "hrv_sdnn_ms"},  # HealthKit HRV is SDNN
        "blood_oxygen_saturation": {"qty": "spo2_pct"},
        "respiratory_rate": {"qty": "respiratory_rate_brpm"},
        "step_count": {"qty": "steps"},
        "active_energy": {"qty": "active_energy_kcal"},
        "basal_energy_burned": {"qty": "bmr_energy_kcal"},
        "weight_body_mass": {"qty": "weight_kg"},
        "body_fat_percentage": {"qty": "body_fat_pct"},
        "body_temperature": {"qty": "body_temperature_c"},
        "apple_sleeping_wrist_temperature": {"qty": "skin_temperature_c"},
        "vo2_max": {"qty": "vo2_max_ml_kg_min"},
        "blood_pressure": {
            "systolic": "blood_pressure_systolic_mmhg",
            "diastolic": "blood_pressure_diastolic_mmhg",
        },
        "sleep_analysis": {
            "totalSleep": "sleep_duration_s",
            "deep": "sleep_deep_s",
            "rem": "sleep_rem_s",
            "core": "sleep_light_s",
            "awake": "sleep_awake_s",
            "inBed": "time_in_bed_s",
        },
    }
)
"""HAE metric name -> {data point field -> metric_type}."""

WORKOUT_FIELDS: Mapping[str, str] = MappingProxyType(
    {
        "duration": "workout_duration_s",
        "activeEnergyBurned": "workout_energy_kcal",
        "activeEnergy": "workout_energy_kcal",
        "distance": "workout_distance_m",
        "avgHeartRate": "workout_avg_heart_rate_bpm",
        "maxHeartRate": "workout_max_heart_rate_bpm",
        "heartRate.avg": "workout_avg_heart_rate_bpm",
        "heartRate.max": "workout_max_heart_rate_bpm",
    }
)
"""Workout field -> metric_type (``{qty, units}`` objects; ``duration`` is plain seconds)."""

FALLBACKS: Mapping[str, str] = MappingProxyType(
    {
        "activeEnergy": "activeEnergyBurned",
        "heartRate.avg": "avgHeartRate",
        "heartRate.max": "maxHeartRate",
    }
)
"""Older or secondary workout fields, used only when the preferred field is absent."""

UNIT_CONVERSIONS: Mapping[str, Conversion] = MappingProxyType(
    {
        "count/min": SAME,
        "bpm": SAME,
        "breaths/min": SAME,
        "ms": SAME,
        "%": SAME,
        "count": SAME,
        "kcal": SAME,
        "kJ": KJ_TO_KCAL,
        "kg": SAME,
        "lb": LB_TO_KG,
        "g": G_TO_KG,
        "degC": SAME,
        "degF": F_TO_C,
        "mmHg": SAME,
        "hr": H_TO_S,
        "min": MIN_TO_S,
        "s": SAME,
        "km": KM_TO_M,
        "mi": MI_TO_M,
        "m": SAME,
    }
)
"""HAE unit -> conversion to the catalogue unit of the metric it is accepted for."""

FRACTION_METRICS = frozenset({"blood_oxygen_saturation", "body_fat_percentage"})
"""Percent metrics HAE may send as fractions (<= 1): multiplied by 100."""

SLEEP_STAMPS = ("sleepStart", "inBedStart", "date")
IGNORED_DATA_KEYS = frozenset(
    {
        "symptoms",
        "ecg",
        "heartRateNotifications",
        "stateOfMind",
        "medications",
        "cycleTracking",
        "workoutRoutes",
    }
)
"""Other HAE arrays: deliberately not flattened (spec), so not drift."""

ANY_UNIT = "*"


def _targets() -> tuple[dict[tuple[str, str, str], int], list[Target]]:
    ids: dict[tuple[str, str, str], int] = {}
    targets: list[Target] = []
    named = [(name, fields) for name, fields in FIELDS.items()] + [
        (WORKOUT_PREFIX + field_name, {"qty": metric})
        for field_name, metric in WORKOUT_FIELDS.items()
    ]
    for name, fields in named:
        units = ACCEPTED_UNITS[name]
        for source_field, metric in fields.items():
            for unit in units or (ANY_UNIT,):
                ids[(name, source_field, unit)] = len(targets)
                targets.append(
                    Target(
                        metric,
                        UNIT_CONVERSIONS.get(unit, SAME),
                        fraction_pct=name in FRACTION_METRICS,
                    )
                )
    return ids, targets


_MAP_IDS, _TARGETS = _targets()
MAP_ID: Mapping[tuple[str, str, str], int] = MappingProxyType(_MAP_IDS)
MAPPING = mapping_frame(_TARGETS)
NO_MAPPING = -1
"""map_id of a value in a unit we do not accept: `HaeValue` fails it before any join."""


def flatten_batch(items: Sequence[FlattenInput]) -> Flattened:
    """Flatten HAE bodies: one record per data point or workout, one value per field."""
    batch = Batch(chunk_text={"name": [], "units": []})
    for item in items:
        _walk(batch, item)
    if not batch.file_no:
        return Flattened(rows=Flattened.empty().rows, issues=batch.issues, drift=batch.drift)

    def describe_record(row: dict[str, Any], column: str, check: str) -> Issue:
        position = row["record_pos"]
        field_name = f"{row['path']}.{row['stamp_field']}"
        stamp = batch.stamps[position]
        return stamp_issue(row["file_no"], row["record_index"], field_name, stamp, DATE_EXPECTED)

    def describe_value(row: dict[str, Any], column: str, check: str) -> Issue:
        path = batch.path[row["record_pos"]]
        if column == "units":
            return _units_issue(row, path)
        field_name = f"{path}.{row['source_field']}"
        return value_issue(row, field_name)

    rows, issues = assemble(
        records=batch.records_frame(),
        record_model=HaeRecord,
        describe_record=describe_record,
        values=batch.values_frame(),
        value_model=HaeValue,
        describe_value=describe_value,
        mapping=MAPPING,
    )
    return Flattened(rows=rows, issues=batch.issues + _unique(issues), drift=batch.drift)


def _units_issue(row: dict[str, Any], path: str) -> Issue:
    name = row["name"]
    if name.startswith(WORKOUT_PREFIX):
        field_name = f"{path}.{name.removeprefix(WORKOUT_PREFIX)}.units"
    else:
        field_name = f"{path.partition('.data[')[0]}.units"
    expected = f"one of {', '.join(ACCEPTED_UNITS[name] or ())} for {name}"
    found = excerpt(row["units"])
    reason = (
        f"{field_name}: expected {expected}, found {found}; these values are quarantined, not "
        "converted (a unit is never guessed: add it to the HAE mapping if it is real)"
    )
    return Issue(row["file_no"], row["record_index"], field_name, reason, expected, found)


def _unique(issues: list[Issue]) -> list[Issue]:
    """One units issue per metric (all its points share the field), other issues as they are."""
    seen: set[tuple[int, str, str]] = set()
    unique: list[Issue] = []
    for issue in issues:
        key = (issue.file_no, issue.field, issue.reason)
        if key not in seen:
            seen.add(key)
            unique.append(issue)
    return unique


def _walk(batch: Batch, item: FlattenInput) -> None:
    payload = item.payload
    data = payload.get("data") if type(payload) is dict else None
    if type(data) is not dict:
        batch.issues.append(
            file_issue(
                item.file_no,
                "data",
                'an object {"metrics": [...], "workouts": [...]}',
                data if type(payload) is dict else payload,
                "only Health Auto Export REST bodies belong here",
            )
        )
        return
    user = item.context.get("user_id")
    if user is None:
        batch.issues.append(
            file_issue(item.file_no, "context.user_id", "the user id", user, USER_FIX)
        )
        return
    problem = _shape_problem(item, data)
    if problem is not None:
        batch.issues.append(problem)
        return
    prefix = f"{item.vendor}:{item.resource}:"
    for key in data.keys() - {"metrics", "workouts"} - IGNORED_DATA_KEYS:
        batch.drift[prefix + key] += 1
    record_index = _walk_metrics(batch, item, user, data.get("metrics") or [], prefix)
    _walk_workouts(batch, item, user, data.get("workouts") or [], record_index)


def _shape_problem(item: FlattenInput, data: dict[str, Any]) -> Issue | None:
    """A whole-file issue when `metrics` / `workouts` are not the lists HAE sends."""
    fix = "only Health Auto Export REST bodies belong here"
    for key in ("metrics", "workouts"):
        if type(data.get(key) or []) is not list:
            return file_issue(item.file_no, f"data.{key}", "a list", data[key], fix)
    for m, metric in enumerate(data.get("metrics") or []):
        if type(metric) is not dict or type(metric.get("data")) is not list:
            expected = 'an object {"name", "units", "data": [...]}'
            return file_issue(item.file_no, f"data.metrics[{m}]", expected, metric, fix)
    return None


def _walk_metrics(
    batch: Batch, item: FlattenInput, user: Any, metrics: list[Any], prefix: str
) -> int:
    record_index = 0
    for m, metric in enumerate(metrics):
        points = metric["data"]
        name = metric.get("name")
        fields = FIELDS.get(name) if type(name) is str else None
        if fields is None:
            batch.drift[f"{prefix}metrics.{name}"] += 1
            record_index += len(points)
            continue
        units = metric.get("units")
        units_text = units if type(units) is str else None
        for j, point in enumerate(points):
            _add_point(
                batch,
                item,
                user,
                f"metrics[{m}].data[{j}]",
                record_index,
                name,
                units_text,
                fields,
                point,
            )
            record_index += 1
    return record_index


def _add_point(
    batch: Batch,
    item: FlattenInput,
    user: Any,
    path: str,
    record_index: int,
    name: str,
    units: str | None,
    fields: Mapping[str, str],
    point: Any,
) -> None:
    if type(point) is not dict:
        batch.issues.append(_shape_issue(item, record_index, path, "an object", point))
        return
    if name == "sleep_analysis" and "totalSleep" not in point and "value" in point:
        return  # unaggregated sleep segments: no rows (spec)
    stamp_field = "date"
    if name == "sleep_analysis":
        stamp_field = next((key for key in SLEEP_STAMPS if point.get(key) is not None), "date")
    record = batch.add_record(
        file_no=item.file_no,
        record_index=record_index,
        path=path,
        user=user,
        stamp_field=stamp_field,
        stamp=point.get(stamp_field),
        device_type=DEVICE_TYPE,
    )
    for source_field in fields:
        map_id = MAP_ID.get(
            (name, source_field, units or ""),
            MAP_ID.get((name, source_field, ANY_UNIT), NO_MAPPING),
        )
        if batch.add_value(record, source_field, map_id, point.get(source_field)):
            batch.chunk_text["name"].append(name)
            batch.chunk_text["units"].append(units)


def _walk_workouts(
    batch: Batch, item: FlattenInput, user: Any, workouts: list[Any], record_index: int
) -> None:
    for w, workout in enumerate(workouts):
        path = f"workouts[{w}]"
        if type(workout) is not dict:
            batch.issues.append(_shape_issue(item, record_index, path, "an object", workout))
            record_index += 1
            continue
        record = batch.add_record(
            file_no=item.file_no,
            record_index=record_index,
            path=path,
            user=user,
            stamp_field="start",
            stamp=workout.get("start"),
            device_type=DEVICE_TYPE,
        )
        for field_name in WORKOUT_FIELDS:
            preferred = FALLBACKS.get(field_name)
            if preferred is not None and _lookup(workout, preferred) is not None:
                continue
            _add_workout_value(batch, record, field_name, _lookup(workout, field_name))
        record_index += 1


def _lookup(workout: dict[str, Any], dotted: str) -> Any:
    value: Any = workout
    for part in dotted.split("."):
        value = value.get(part) if type(value) is dict else None
    return value


PLAIN_WORKOUT_UNITS: Mapping[str, str] = MappingProxyType(
    {"duration": "s", "avgHeartRate": "bpm", "maxHeartRate": "bpm"}
)
"""Workout fields that may be a bare number: their only possible unit."""


def _add_workout_value(batch: Batch, record: int, field_name: str, value: Any) -> None:
    name = WORKOUT_PREFIX + field_name
    if type(value) is dict:
        quantity, units, source_field = value.get("qty"), value.get("units"), f"{field_name}.qty"
    else:
        quantity, units, source_field = value, PLAIN_WORKOUT_UNITS.get(field_name), field_name
    units_text = units if type(units) is str else None
    map_id = MAP_ID.get((name, "qty", units_text or ""), NO_MAPPING)
    if batch.add_value(record, source_field, map_id, quantity):
        batch.chunk_text["name"].append(name)
        batch.chunk_text["units"].append(units_text)


def _shape_issue(
    item: FlattenInput, record_index: int, field_name: str, expected: str, found: Any
) -> Issue:
    found_text = excerpt(found)
    reason = f"{field_name}: expected {expected}, found {found_text}; it was skipped"
    return Issue(item.file_no, record_index, field_name, reason, expected, found_text)


EXPECTED = (
    'a Health Auto Export body {"data": {"metrics": [...], "workouts": [...]}} or the generic shape'
)
RESOURCES: Mapping[str, Flattener | None] = MappingProxyType(
    {"hae": flatten_batch, generic.RESOURCE: generic.flatten_batch}
)


def detect(payload: Any, headers: Mapping[str, str]) -> str | None:
    """``hae`` for a Health Auto Export body, ``generic`` for the generic shape."""
    if type(payload) is not dict or type(payload.get("data")) is not dict:
        return None
    data = payload["data"]
    if "metrics" in data or "workouts" in data:
        return "hae"
    return generic.RESOURCE if generic.is_generic_shape(payload) else "hae"
