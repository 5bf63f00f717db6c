"""Where vendor fields go: targets (metric, unit conversion, value rules) and the mapping table."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import polars as pl

from schemas.catalogue import unit_of


@dataclass(frozen=True)
class Conversion:
    """``catalogue value = (vendor value + shift) * mul / div``."""

    mul: float = 1.0
    div: float = 1.0
    shift: float = 0.0


SAME = Conversion()
KJ_TO_KCAL = Conversion(div=4.184)
LB_TO_KG = Conversion(mul=0.45359237)
G_TO_KG = Conversion(div=1000.0)
MS_TO_S = Conversion(div=1000.0)
MIN_TO_S = Conversion(mul=60.0)
H_TO_S = Conversion(mul=3600.0)
MI_TO_M = Conversion(mul=1609.344)
KM_TO_M = Conversion(mul=1000.0)
F_TO_C = Conversion(shift=-32.0, mul=5.0, div=9.0)
F_DELTA_TO_C = Conversion(mul=5.0, div=9.0)

MAPPING_SCHEMA: dict[str, pl.DataType] = {
    "map_id": pl.Int64(),
    "metric_type": pl.String(),
    "unit": pl.String(),
    "mul": pl.Float64(),
    "div": pl.Float64(),
    "shift": pl.Float64(),
    "skip_negative": pl.Boolean(),
    "fraction_pct": pl.Boolean(),
}


@dataclass(frozen=True)
class Target:
    """Where one vendor field goes: the metric, the conversion and special value rules."""

    metric_type: str
    conversion: Conversion = SAME
    skip_negative: bool = False
    """Negative values are status codes (Garmin stress/body battery): dropped silently."""
    fraction_pct: bool = False
    """Values <= 1 are fractions of a percent: multiplied by 100 (HAE)."""


def mapping_frame(targets: Sequence[Target]) -> pl.DataFrame:
    """The mapping table, one row per target (``map_id`` = position), units from the catalogue.

    Raises KeyError at import time when a target names a metric missing from the catalogue.
    """
    return pl.DataFrame(
        {
            "map_id": range(len(targets)),
            "metric_type": [t.metric_type for t in targets],
            "unit": [unit_of(t.metric_type) for t in targets],
            "mul": [t.conversion.mul for t in targets],
            "div": [t.conversion.div for t in targets],
            "shift": [t.conversion.shift for t in targets],
            "skip_negative": [t.skip_negative for t in targets],
            "fraction_pct": [t.fraction_pct for t in targets],
        },
        schema=MAPPING_SCHEMA,
    )


def convert(values: pl.DataFrame, mapping: pl.DataFrame) -> pl.DataFrame:
    """Join `values` (with ``map_id``) to `mapping`: metric, catalogue unit, converted value.

    Negative values of `skip_negative` targets are dropped (status codes, not data).
    """
    joined = values.join(mapping, on="map_id", how="left")
    value = pl.col("value")
    scaled = (value + pl.col("shift")) * pl.col("mul") / pl.col("div")
    fraction = pl.col("fraction_pct") & (value <= 1.0)
    return joined.filter(~(pl.col("skip_negative") & (value < 0))).with_columns(
        value=pl.when(fraction).then(scaled * 100.0).otherwise(scaled)
    )
