"""Apple Health via Health Auto Export (HAE) REST bodies (spec section 9).

Body: ``{"data": {"metrics": [{"name", "units", "data": [{"date", "qty" | "Min"/"Avg"/"Max" |
..., "source"?}]}], "workouts": [{"start", "duration", "activeEnergyBurned": {"qty", "units"},
...}], ...}}``. Dates are ``yyyy-MM-dd HH:mm:ss Z``. One `HaeRecord` row per metric data point
or workout; one `HaeValue` row per value, carrying the units it was sent in. A known metric in a
unit not listed in `ACCEPTED_UNITS` fails (the value is never guessed).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

import pandera.polars as pa
import polars as pl

from schemas.vendors.records import RecordFrame, ValueFrame

NAME = "apple_health"

DATE_EXPECTED = (
    "a 'yyyy-MM-dd HH:mm:ss Z' date (e.g. 2025-07-28 07:12:00 -0700) or a YYYY-MM-DD date"
)

WORKOUT_PREFIX = "workouts."
"""`HaeValue.name` of a workout value is this prefix + its field (``workouts.distance``)."""

_BPM = ("count/min", "bpm")
_TEMPERATURE = ("degC", "degF")
_ENERGY = ("kcal", "kJ")
_SLEEP = ("hr", "min", "s")

ACCEPTED_UNITS: Mapping[str, tuple[str, ...] | None] = MappingProxyType(
    {
        "heart_rate": _BPM,
        "resting_heart_rate": _BPM,
        "heart_rate_variability": ("ms",),
        "blood_oxygen_saturation": ("%",),
        "respiratory_rate": ("count/min", "breaths/min"),
        "step_count": ("count",),
        "active_energy": _ENERGY,
        "basal_energy_burned": _ENERGY,
        "weight_body_mass": ("kg", "lb", "g"),
        "body_fat_percentage": ("%",),
        "body_temperature": _TEMPERATURE,
        "apple_sleeping_wrist_temperature": _TEMPERATURE,
        "vo2_max": None,
        "blood_pressure": ("mmHg",),
        "sleep_analysis": _SLEEP,
        "workouts.duration": ("s",),
        "workouts.activeEnergyBurned": _ENERGY,
        "workouts.activeEnergy": _ENERGY,
        "workouts.distance": ("km", "mi", "m"),
        "workouts.avgHeartRate": _BPM,
        "workouts.maxHeartRate": _BPM,
        "workouts.heartRate.avg": _BPM,
        "workouts.heartRate.max": _BPM,
    }
)
"""Metric name (or workout field) -> the units HAE may send it in (``None``: any unit, stored
as the catalogue unit; VO2 max has one physical unit whatever the label)."""

_ACCEPTED_PAIRS: list[str] = [
    f"{name}\x1f{unit}" for name, units in ACCEPTED_UNITS.items() for unit in units or ()
]
_ANY_UNIT: list[str] = [name for name, units in ACCEPTED_UNITS.items() if units is None]


class HaeRecord(RecordFrame):
    """One metric data point or one workout."""


class HaeValue(ValueFrame):
    """One value of a data point (``qty``, ``Min``, ``totalSleep``...) or of a workout."""

    name: pl.String = pa.Field(isin=sorted(ACCEPTED_UNITS))
    """The HAE metric name, or ``workouts.<field>`` for a workout value."""
    units: pl.String = pa.Field(nullable=True)
    """The units the value was sent in (the metric's ``units``, a workout field's ``units``)."""

    @pa.check("units", name="units_accepted_for_metric")
    @classmethod
    def _units_accepted(cls, data: pa.PolarsData) -> pl.LazyFrame:
        pair = pl.concat_str(pl.col("name"), pl.col("units"), separator="\x1f")
        accepted = pl.col("name").is_in(_ANY_UNIT) | pair.is_in(_ACCEPTED_PAIRS)
        return data.lazyframe.select(accepted.fill_null(False))
