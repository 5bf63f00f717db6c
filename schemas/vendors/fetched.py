"""What the fetched documents of the pointer vendors (Oura, WHOOP, Fitbit, Withings, Polar) share.

A fetched document (or each element of a page) is one `FetchedRecord` row; an Oura sample series
(``{interval, items[], timestamp}``) is a record of its own, stamped at its own ``timestamp``.
Polar exercises and Fitbit core temperature are stamped in the user's local time: their record
carries the UTC offset that turns that local time into an instant. One `FetchedValue` row per
mapped field or sample item.
"""

from __future__ import annotations

import pandera.polars as pa
import polars as pl

from schemas.vendors.records import RecordFrame, ValueFrame

MAX_UTC_OFFSET_S = 18 * 3600
"""ISO 8601 offsets span -18:00 ... +18:00; anything beyond is a unit mistake (hours as minutes)."""
MAX_SAMPLE_INTERVAL_S = 86_400.0
"""Samples of one series are at most a day apart (Oura uses 5 s ... 5 min)."""
ISO_STAMP_EXPECTED = "an ISO 8601 date-time with a UTC offset (or Z)"
DATE_EXPECTED = "a YYYY-MM-DD date"
EPOCH_EXPECTED = "epoch seconds (UTC) as an integer"


class FetchedRecord(RecordFrame):
    """One fetched document, one element of a page, or one Oura sample series."""

    local_offset_s: pl.Float64 = pa.Field(nullable=True)
    """Seconds east of UTC of a device-local stamp (Polar, Fitbit core temperature); null when
    the stamp must carry its own offset."""
    is_samples: pl.Boolean = pa.Field()
    sample_interval_s: pl.Float64 = pa.Field(nullable=True)
    """Seconds between the items of a sample series; null for a document record."""

    @pa.check("local_offset_s", name="utc_offset_within_18_hours")
    @classmethod
    def _offset_in_range(cls, data: pa.PolarsData) -> pl.LazyFrame:
        offset = pl.col("local_offset_s")
        return data.lazyframe.select(
            (offset.is_null() | (offset.abs() <= MAX_UTC_OFFSET_S)).fill_null(False)
        )

    @pa.check("sample_interval_s", name="sample_interval_positive")
    @classmethod
    def _interval_positive(cls, data: pa.PolarsData) -> pl.LazyFrame:
        interval = pl.col("sample_interval_s")
        usable = interval.is_finite() & (interval > 0) & (interval <= MAX_SAMPLE_INTERVAL_S)
        return data.lazyframe.select((~pl.col("is_samples") | usable).fill_null(False))


class FetchedValue(ValueFrame):
    """One mapped field of a document, or one item of a sample series."""

    item: pl.String = pa.Field(nullable=True)
    """Position of a sample item in its series (null for a scalar field)."""
    offset: pl.Float64 = pa.Field(nullable=True)
    """Seconds after the record's stamp: 0 for a scalar, item x interval for a sample."""
