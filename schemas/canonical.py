"""The canonical row: the single contract for what may be loaded into Postgres.

One row per (user, device, metric, timestamp) value, plus lineage columns that say which input
file of a batch (`file_no`), which record of that file (`record_index`) and which vendor field
(`source_field`) it came from. `validate` with ``lazy=True``: every failing row is reported in
`SchemaErrors.failure_cases` (column ``index`` = row position) so exactly those rows can be
quarantined.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandera.polars as pa
import polars as pl
from pandera.engines import polars_engine as pe

from schemas.catalogue import BOUNDS, CATALOGUE
from schemas.vendors import REGISTRY as VENDOR_REGISTRY
from schemas.vendors.records import MAX_USER_ID_LENGTH

GENERIC_DEVICE_TYPE = "generic"
"""Device of a generic-shape body posted to ``/webhooks/generic``: the sender did not say."""

DEVICE_TYPES: tuple[str, ...] = tuple(VENDOR_REGISTRY)
"""Every vendor is a device type (`schemas.vendors.REGISTRY`); `generic` is the last."""
VENDOR_DEVICE_TYPES: tuple[str, ...] = tuple(d for d in DEVICE_TYPES if d != GENERIC_DEVICE_TYPE)

EARLIEST_TIMESTAMP = datetime(1970, 1, 1, tzinfo=UTC)
FUTURE_TOLERANCE = timedelta(days=1)
"""A stamp more than this after "now" is a sender bug (ms read as s, a wrong year): quarantined."""

TIMESTAMP_DTYPE = pl.Datetime("us", "UTC")
LATEST_REPRESENTABLE = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
"""Build no instant past this: Pandera renders failure cases as Python datetimes, which end
here, and a later stamp crashes the check instead of failing it."""
EARLIEST_REPRESENTABLE = datetime(1, 1, 2, tzinfo=UTC)
"""Nor before this (a negative epoch such as -2**40 s is year -32873): same reason."""

CANONICAL_SCHEMA: dict[str, pl.DataType] = {
    "user_id": pl.String(),
    "device_type": pl.String(),
    "metric_type": pl.String(),
    "value": pl.Float64(),
    "unit": pl.String(),
    "timestamp": TIMESTAMP_DTYPE,
    "file_no": pl.Int64(),
    "record_index": pl.Int64(),
    "source_field": pl.String(),
}
"""Column order and dtypes of the flattened frame (public row columns first, then lineage)."""

ROW_COLUMNS: tuple[str, ...] = (
    "user_id",
    "device_type",
    "metric_type",
    "value",
    "unit",
    "timestamp",
)
"""The columns of the public flatten contract (spec section 2), without lineage."""

LINEAGE_COLUMNS: tuple[str, ...] = ("file_no", "record_index", "source_field")

_BOUNDS_OF_METRIC = pl.DataFrame(
    {
        "metric_type": list(BOUNDS),
        "min": [lo for lo, _ in BOUNDS.values()],
        "max": [hi for _, hi in BOUNDS.values()],
    }
)

_UNIT_OF_METRIC = pl.DataFrame(
    {"metric_type": list(CATALOGUE), "_catalogue_unit": list(CATALOGUE.values())}
)


class CanonicalRow(pa.DataFrameModel):
    """One canonical metric value, ready to load."""

    user_id: pl.String = pa.Field(str_length={"min_value": 1, "max_value": MAX_USER_ID_LENGTH})
    device_type: pl.String = pa.Field(isin=DEVICE_TYPES)
    metric_type: pl.String = pa.Field(isin=sorted(CATALOGUE))
    value: pl.Float64 = pa.Field()
    unit: pl.String = pa.Field()
    timestamp: pe.DateTime = pa.Field(dtype_kwargs={"time_unit": "us", "time_zone": "UTC"})
    file_no: pl.Int64 = pa.Field(ge=0)
    record_index: pl.Int64 = pa.Field(ge=0)
    source_field: pl.String = pa.Field()

    class Config:
        strict = True
        ordered = True

    @pa.check("user_id", name="not_blank")
    @classmethod
    def _user_id_not_blank(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(pl.col(data.key).str.strip_chars().str.len_chars() > 0)

    @pa.check("user_id", name="no_nul")
    @classmethod
    def _user_id_no_nul(cls, data: pa.PolarsData) -> pl.LazyFrame:
        # Postgres text refuses NUL: one such row would fail the COPY of its whole batch.
        return data.lazyframe.select(~pl.col(data.key).str.contains("\x00", literal=True))

    @pa.check("value", name="finite")
    @classmethod
    def _value_finite(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(pl.col(data.key).is_finite())

    @pa.check("value", name="within_bounds")
    @classmethod
    def _value_within_bounds(cls, data: pa.PolarsData) -> pl.LazyFrame:
        """The catalogue's physical bounds of the metric (an unknown metric fails elsewhere)."""
        metric = pl.col("metric_type")
        lo, hi = (
            metric.replace_strict(
                _BOUNDS_OF_METRIC["metric_type"],
                _BOUNDS_OF_METRIC[side],
                default=None,
                return_dtype=pl.Float64,
            )
            for side in ("min", "max")
        )
        value = pl.col(data.key)
        return data.lazyframe.select(
            (lo.is_null() | ((value >= lo) & (value <= hi))).fill_null(False)
        )

    @pa.check("timestamp", name="sane_range")
    @classmethod
    def _timestamp_in_range(cls, data: pa.PolarsData) -> pl.LazyFrame:
        latest = datetime.now(UTC) + FUTURE_TOLERANCE
        stamp = pl.col(data.key)
        return data.lazyframe.select(stamp.is_between(EARLIEST_TIMESTAMP, latest))

    @pa.dataframe_check(name="unit_is_catalogue_unit")
    @classmethod
    def _unit_matches_catalogue(cls, data: pa.PolarsData) -> pl.LazyFrame:
        catalogue_unit = pl.col("metric_type").replace_strict(
            _UNIT_OF_METRIC["metric_type"],
            _UNIT_OF_METRIC["_catalogue_unit"],
            default=None,
            return_dtype=pl.String,
        )
        return data.lazyframe.select((catalogue_unit == pl.col("unit")).fill_null(False))


def empty_canonical() -> pl.DataFrame:
    """A frame with no rows and exactly the canonical columns."""
    return pl.DataFrame(schema=CANONICAL_SCHEMA)
