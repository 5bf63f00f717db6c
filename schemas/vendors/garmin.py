"""Garmin Health API push bodies (spec section 5).

Body: ``{"<summaryType>": [summary, ...], ...}``; every summary has ``userId`` and an epoch-second
stamp (``startTimeInSeconds`` or ``measurementTimeInSeconds``; ``userMetrics`` a
``calendarDate``). Scalar fields are one value each; ``timeOffset*`` and ``hrvValues`` maps are
``{"<seconds after start>": value}`` samples. One `GarminSummary` row per summary, one
`GarminValue` row per mapped scalar or sample.
"""

from __future__ import annotations

import pandera.polars as pa
import polars as pl

from schemas.vendors.records import RecordFrame, ValueFrame

NAME = "garmin"

STAMP_EXPECTED = "epoch seconds (UTC) as an integer"
MAX_OFFSET_SECONDS = 31 * 86_400
"""A sample key is seconds after a summary's start; summaries span a day at most."""
DATE_EXPECTED = "a YYYY-MM-DD date"


class GarminSummary(RecordFrame):
    """One summary of one summary type."""

    summary_type: pl.String = pa.Field()


class GarminValue(ValueFrame):
    """One scalar field or one sample of a ``{"<seconds after start>": value}`` map."""

    offset_raw: pl.String = pa.Field(nullable=True)
    """The sample's key as sent; null for a scalar field."""
    offset: pl.Int64 = pa.Field(nullable=True)
    """Seconds after the summary's start; 0 for a scalar field."""

    @pa.check("offset", name="offset_is_seconds_within_the_summary")
    @classmethod
    def _offset_parsed(cls, data: pa.PolarsData) -> pl.LazyFrame:
        offset = pl.col("offset")
        in_range = offset.abs() <= MAX_OFFSET_SECONDS
        return data.lazyframe.select((in_range | pl.col("offset_raw").is_null()).fill_null(False))
