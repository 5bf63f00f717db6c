"""Flatten Garmin Health API push bodies (spec section 5).

Each summary is one record stamped at its start (or measurement time; ``userMetrics`` at its
calendar date); ``timeOffset*`` / ``hrvValues`` maps are samples at start + key seconds.
Ping items (with ``callbackURL``) and summary types we do not load give no rows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import polars as pl

from schemas.vendors.garmin import (
    DATE_EXPECTED,
    MAX_OFFSET_SECONDS,
    STAMP_EXPECTED,
    GarminSummary,
    GarminValue,
)
from tasks.flatten.columns import Batch
from tasks.flatten.issues import file_issue, stamp_issue, user_issue, value_issue
from tasks.flatten.mapping import G_TO_KG, Target, mapping_frame
from tasks.flatten.model import POINTER, Flattened, Flattener, FlattenInput, Issue
from tasks.flatten.validate import assemble
from tasks.flatten.values import excerpt

NAME = DEVICE_TYPE = "garmin"


@dataclass(frozen=True)
class SummarySpec:
    """How one summary type maps: its stamp field, scalar, sample-map and nested fields."""

    stamp_field: str
    scalars: Mapping[str, Target] = field(default_factory=dict)
    samples: Mapping[str, Target] = field(default_factory=dict)
    nested: Mapping[str, tuple[str, Target]] = field(default_factory=dict)
    ignored: frozenset[str] = frozenset()
    """Fields the spec deliberately does not map: not loaded and not reported as drift."""
    off_wrist_keep: frozenset[str] | None = None
    """When ``validation`` is ``OFF_WRIST`` only these fields are loaded."""


_COMMON_IGNORED = frozenset(
    {
        "userId",
        "userAccessToken",
        "summaryId",
        "calendarDate",
        "startTimeInSeconds",
        "startTimeOffsetInSeconds",
        "durationInSeconds",
        "measurementTimeInSeconds",
        "measurementTimeOffsetInSeconds",
        "source",
    }
)

STRESS = Target("stress_level", skip_negative=True)
BODY_BATTERY = Target("body_battery_level", skip_negative=True)

SUMMARIES: Mapping[str, SummarySpec] = MappingProxyType(
    {
        "dailies": SummarySpec(
            stamp_field="startTimeInSeconds",
            scalars={
                "steps": Target("steps"),
                "distanceInMeters": Target("distance_m"),
                "activeKilocalories": Target("active_energy_kcal"),
                "bmrKilocalories": Target("bmr_energy_kcal"),
                "restingHeartRateInBeatsPerMinute": Target("resting_heart_rate_bpm"),
                "minHeartRateInBeatsPerMinute": Target("heart_rate_min_bpm"),
                "maxHeartRateInBeatsPerMinute": Target("heart_rate_max_bpm"),
                "floorsClimbed": Target("floors_climbed"),
                "moderateIntensityDurationInSeconds": Target("intensity_moderate_s"),
                "vigorousIntensityDurationInSeconds": Target("intensity_vigorous_s"),
                "bodyBatteryChargedValue": Target("body_battery_charged", skip_negative=True),
                "bodyBatteryDrainedValue": Target("body_battery_drained", skip_negative=True),
                "averageStressLevel": Target("stress_level_avg", skip_negative=True),
                "maxStressLevel": Target("stress_level_max", skip_negative=True),
            },
            samples={"timeOffsetHeartRateSamples": Target("heart_rate_bpm")},
            ignored=frozenset(
                {
                    "activityType",
                    "activeTimeInSeconds",
                    "averageHeartRateInBeatsPerMinute",  # a 7-day average, not this day's
                    "consumedCalories",
                    "stressDurationInSeconds",
                    "restStressDurationInSeconds",
                    "activityStressDurationInSeconds",
                    "lowStressDurationInSeconds",
                    "mediumStressDurationInSeconds",
                    "highStressDurationInSeconds",
                    "stressQualifier",
                    "stepsGoal",
                    "netKilocaloriesGoal",
                    "intensityDurationGoalInSeconds",
                    "floorsClimbedGoal",
                    "pushes",
                    "pushDistanceInMeters",
                    "pushesGoal",
                    "pushDistanceGoalInMeters",
                }
            ),
        ),
        "sleeps": SummarySpec(
            stamp_field="startTimeInSeconds",
            scalars={
                "durationInSeconds": Target("sleep_duration_s"),
                "deepSleepDurationInSeconds": Target("sleep_deep_s"),
                "lightSleepDurationInSeconds": Target("sleep_light_s"),
                "remSleepInSeconds": Target("sleep_rem_s"),
                "awakeDurationInSeconds": Target("sleep_awake_s"),
            },
            samples={
                "timeOffsetSleepSpo2": Target("spo2_pct"),
                "timeOffsetSleepRespiration": Target("respiratory_rate_brpm"),
            },
            nested={"overallSleepScore": ("value", Target("sleep_score"))},
            ignored=frozenset(
                {
                    "unmeasurableSleepInSeconds",
                    "sleepLevelsMap",
                    "validation",
                    "sleepScores",
                    "naps",
                }
            ),
            off_wrist_keep=frozenset({"durationInSeconds"}),
        ),
        "hrv": SummarySpec(
            stamp_field="startTimeInSeconds",
            scalars={
                "lastNightAvg": Target("sleep_avg_hrv_rmssd_ms"),
                "lastNight5MinHigh": Target("sleep_hrv_5min_high_rmssd_ms"),
            },
            samples={"hrvValues": Target("hrv_rmssd_ms")},
        ),
        "stressDetails": SummarySpec(
            stamp_field="startTimeInSeconds",
            samples={
                "timeOffsetStressLevelValues": STRESS,
                "timeOffsetBodyBatteryValues": BODY_BATTERY,
            },
            ignored=frozenset({"bodyBatteryDynamicFeedbackEvent", "bodyBatteryActivityEvents"}),
        ),
        "pulseox": SummarySpec(
            stamp_field="startTimeInSeconds",
            samples={"timeOffsetSpo2Values": Target("spo2_pct")},
            ignored=frozenset({"onDemand"}),
        ),
        "allDayRespiration": SummarySpec(
            stamp_field="startTimeInSeconds",
            samples={"timeOffsetEpochToBreaths": Target("respiratory_rate_brpm")},
        ),
        "bodyComps": SummarySpec(
            stamp_field="measurementTimeInSeconds",
            scalars={
                "weightInGrams": Target("weight_kg", G_TO_KG),
                "muscleMassInGrams": Target("muscle_mass_kg", G_TO_KG),
                "boneMassInGrams": Target("bone_mass_kg", G_TO_KG),
                "bodyFatInPercent": Target("body_fat_pct"),
                "bodyWaterInPercent": Target("body_water_pct"),
                "bodyMassIndex": Target("bmi"),
            },
        ),
        "bloodPressures": SummarySpec(
            stamp_field="measurementTimeInSeconds",
            scalars={
                "systolic": Target("blood_pressure_systolic_mmhg"),
                "diastolic": Target("blood_pressure_diastolic_mmhg"),
                "pulse": Target("heart_rate_bpm"),
            },
            ignored=frozenset({"sourceType"}),
        ),
        "skinTemp": SummarySpec(
            stamp_field="startTimeInSeconds",
            scalars={"avgDeviationCelsius": Target("body_temperature_delta_c")},
        ),
        "userMetrics": SummarySpec(
            stamp_field="calendarDate",
            scalars={"vo2Max": Target("vo2_max_ml_kg_min")},
            ignored=frozenset({"vo2MaxCycling", "fitnessAge", "enhanced"}),
        ),
    }
)

IGNORED_SUMMARY_TYPES = frozenset(
    {
        "epochs",
        "activities",
        "activityDetails",
        "activityFiles",
        "manuallyUpdatedActivities",
        "moveIQActivities",
        "healthSnapshot",
        "menstrualCycleTracking",
        "solarIntensity",
        "deregistrations",
        "userPermissionsChange",
    }
)
"""Summary types the spec lists as giving no rows (not drift)."""


def _targets() -> tuple[dict[tuple[str, str], int], list[Target]]:
    ids: dict[tuple[str, str], int] = {}
    targets: list[Target] = []
    for summary_type, spec in SUMMARIES.items():
        nested = {f"{name}.{sub}": target for name, (sub, target) in spec.nested.items()}
        for name, target in {**spec.scalars, **spec.samples, **nested}.items():
            ids[(summary_type, name)] = len(targets)
            targets.append(target)
    return ids, targets


_MAP_IDS, _TARGETS = _targets()
MAP_ID: Mapping[tuple[str, str], int] = MappingProxyType(_MAP_IDS)
MAPPING = mapping_frame(_TARGETS)


def flatten_batch(items: Sequence[FlattenInput]) -> Flattened:
    """Flatten Garmin push bodies: one record per summary, one value per field or sample."""
    batch = Batch()
    summary_types: list[str] = []
    for item in items:
        _walk(batch, item, summary_types)
    if not batch.file_no:
        return Flattened(rows=Flattened.empty().rows, issues=batch.issues, drift=batch.drift)

    def describe_record(row: dict[str, Any], column: str, check: str) -> Issue:
        position = row["record_pos"]
        if column == "timestamp":
            stamp_field = batch.stamp_field[position]
            expected = DATE_EXPECTED if stamp_field == "calendarDate" else STAMP_EXPECTED
            return stamp_issue(
                row["file_no"],
                row["record_index"],
                f"{row['path']}.{stamp_field}",
                batch.stamps[position],
                expected,
            )
        field_name = f"{row['path']}.userId"
        return user_issue(row["file_no"], row["record_index"], field_name, batch.users[position])

    def describe_value(row: dict[str, Any], column: str, check: str) -> Issue:
        field_name = f"{batch.path[row['record_pos']]}.{row['source_field']}"
        if row["offset_raw"] is not None:
            field_name += f'["{row["offset_raw"]}"]'
        if column == "offset":
            expected = (
                "whole seconds after the summary's start as the sample key "
                f"(at most {MAX_OFFSET_SECONDS} s)"
            )
            found = excerpt(row["offset_raw"])
            reason = f"{field_name}: expected {expected}, found {found}; the sample is quarantined"
            return Issue(row["file_no"], row["record_index"], field_name, reason, expected, found)
        return value_issue(row, field_name)

    records = batch.records_frame().with_columns(
        summary_type=pl.Series(summary_types, dtype=pl.String)
    )
    rows, issues = assemble(
        records=records,
        record_model=GarminSummary,
        describe_record=describe_record,
        values=_with_offsets(batch.values_frame(key_column="offset_raw")),
        value_model=GarminValue,
        describe_value=describe_value,
        mapping=MAPPING,
    )
    return Flattened(rows=rows, issues=batch.issues + issues, drift=batch.drift)


def _with_offsets(values: pl.DataFrame) -> pl.DataFrame:
    """``offset``: seconds after the summary's start (0 for scalars, null when unparseable)."""
    offset_raw = pl.col("offset_raw")
    parsed = offset_raw.str.strip_chars().cast(pl.Int64, strict=False)
    return values.with_columns(
        offset=pl.when(offset_raw.is_null()).then(pl.lit(0, pl.Int64)).otherwise(parsed)
    )


def _walk(batch: Batch, item: FlattenInput, summary_types: list[str]) -> None:
    payload = item.payload
    prefix = f"{item.vendor}:{item.resource}:"
    if type(payload) is not dict:
        batch.issues.append(
            file_issue(
                item.file_no,
                "body",
                "a JSON object keyed by summary type",
                payload,
                "only Garmin push bodies belong here",
            )
        )
        return
    for key, summaries in payload.items():
        if type(summaries) is not list:
            batch.issues.append(
                file_issue(
                    item.file_no,
                    key,
                    "a list of summaries",
                    summaries,
                    "the body is not a Garmin push body",
                )
            )
            return
    record_index = 0
    for key, summaries in payload.items():
        spec = SUMMARIES.get(key)
        if spec is None and key not in IGNORED_SUMMARY_TYPES:
            batch.drift[prefix + key] += len(summaries)
        for position, summary in enumerate(summaries):
            if spec is not None:
                path = f"{key}[{position}]"
                if _walk_summary(batch, item, key, spec, path, record_index, summary):
                    summary_types.append(key)
            record_index += 1


def _walk_summary(
    batch: Batch,
    item: FlattenInput,
    summary_type: str,
    spec: SummarySpec,
    path: str,
    record_index: int,
    summary: Any,
) -> bool:
    """Add one summary's record and values; False when it gave no record."""
    if type(summary) is not dict:
        expected = "an object (one summary)"
        found = excerpt(summary)
        reason = f"{path}: expected {expected}, found {found}; the record was quarantined"
        batch.issues.append(Issue(item.file_no, record_index, path, reason, expected, found))
        return False
    if "callbackURL" in summary:
        return False  # a ping item inside a push body: a pointer, no data
    record = batch.add_record(
        file_no=item.file_no,
        record_index=record_index,
        path=path,
        user=summary.get("userId"),
        stamp_field=spec.stamp_field,
        stamp=summary.get(spec.stamp_field),
        device_type=DEVICE_TYPE,
    )
    keep = spec.off_wrist_keep if summary.get("validation") == "OFF_WRIST" else None
    drift_prefix = f"{item.vendor}:{item.resource}:{summary_type}."
    for name, value in summary.items():
        if keep is not None and name not in keep:
            continue
        if name in spec.scalars:
            batch.add_value(record, name, MAP_ID[(summary_type, name)], value)
        elif name in spec.samples:
            _add_samples(batch, item, summary_type, path, record_index, record, name, value)
        elif name in spec.nested:
            sub, _ = spec.nested[name]
            inner = value.get(sub) if type(value) is dict else value
            batch.add_value(record, f"{name}.{sub}", MAP_ID[(summary_type, f"{name}.{sub}")], inner)
        elif name not in spec.ignored and name not in _COMMON_IGNORED:
            batch.drift[drift_prefix + name] += 1
    return True


def _add_samples(
    batch: Batch,
    item: FlattenInput,
    summary_type: str,
    path: str,
    record_index: int,
    record: int,
    name: str,
    samples: Any,
) -> None:
    if samples is None:
        return
    if type(samples) is not dict:
        field_name = f"{path}.{name}"
        expected = 'an object {"<seconds after start>": value}'
        found = excerpt(samples)
        reason = f"{field_name}: expected {expected}, found {found}; these samples are quarantined"
        batch.issues.append(Issue(item.file_no, record_index, field_name, reason, expected, found))
        return
    batch.add_keyed(record, name, MAP_ID[(summary_type, name)], samples)


EXPECTED = "an object of summary lists {<summaryType>: [...]} (push or ping)"
RESOURCES: Mapping[str, Flattener | None] = MappingProxyType(
    {"push": flatten_batch, "ping": POINTER}
)


def detect(payload: Any, headers: Mapping[str, str]) -> str | None:
    """``ping`` when every item carries a callbackURL, else ``push``; None when not lists."""
    if type(payload) is not dict or not all(type(v) is list for v in payload.values()):
        return None
    items = [item for summaries in payload.values() for item in summaries]
    if items and all(type(item) is dict and "callbackURL" in item for item in items):
        return "ping"
    return "push"
