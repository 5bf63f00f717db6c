"""The two flat frames every vendor payload is normalised into before it is mapped.

`RecordFrame`: one row per vendor record (a generic event, a Garmin summary, an HAE data point or
workout) with who it belongs to and when it is stamped. `ValueFrame`: one row per vendor value of
those records, before mapping and unit conversion. Null or missing vendor values never get a row;
a value that is present but not a number (a string, a boolean, an object) keeps its excerpt in
`raw` and a null `value`, which fails validation and becomes a quarantined record issue.
"""

from __future__ import annotations

import pandera.polars as pa
import polars as pl
from pandera.engines import polars_engine as pe

EXCERPT_LENGTH = 200
MAX_USER_ID_LENGTH = 256


class RecordFrame(pa.DataFrameModel):
    """One vendor record: who it belongs to and when it is stamped.

    The user id and stamp as sent stay with the flattener for the issue text; a null
    `user_id` or `timestamp` here means they were missing or unusable.
    """

    file_no: pl.Int64 = pa.Field(ge=0)
    record_index: pl.Int64 = pa.Field(ge=0)
    path: pl.String = pa.Field()
    """Where the record sits in the body (``dailies[0]``, ``metrics[2].data[5]``, ``""``)."""
    user_id: pl.String = pa.Field(
        nullable=False, str_length={"min_value": 1, "max_value": MAX_USER_ID_LENGTH}
    )
    stamp_field: pl.String = pa.Field()
    """The field that stamps the record (``startTimeInSeconds``, ``timestamp``, ``date``)."""
    timestamp: pe.DateTime = pa.Field(
        nullable=False, dtype_kwargs={"time_unit": "us", "time_zone": "UTC"}
    )

    class Config:
        strict = True

    @pa.check("user_id", name="not_blank")
    @classmethod
    def _user_id_not_blank(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(pl.col(data.key).str.strip_chars().str.len_chars() > 0)


class ValueFrame(pa.DataFrameModel):
    """One vendor value of a record, before mapping and unit conversion."""

    file_no: pl.Int64 = pa.Field(ge=0)
    record_index: pl.Int64 = pa.Field(ge=0)
    source_field: pl.String = pa.Field()
    """The vendor's own field name (``restingHeartRateInBeatsPerMinute``, ``qty``)."""
    raw: pl.String = pa.Field(nullable=True)
    """Excerpt of the value as sent when it was not a JSON number (a string, bool, object)."""
    value: pl.Float64 = pa.Field(nullable=False)
    """The number; numeric strings are parsed, anything else is null and fails."""

    class Config:
        strict = True

    @pa.check("value", name="finite")
    @classmethod
    def _value_finite(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(pl.col(data.key).is_finite())
