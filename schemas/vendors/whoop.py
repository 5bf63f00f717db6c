"""WHOOP API v2 fetched records (spec section 4).

``/v2/activity/sleep/{id}``, ``/v2/activity/workout/{id}``, ``/v2/cycle/{id}``,
``/v2/cycle/{id}/recovery`` give one record; collections a page ``{"records": [...],
"next_token"}``. Every record carries ``user_id``; only ``score_state = "SCORED"`` records carry
data. One `WhoopRecord` row per scored record, one `WhoopValue` row per mapped ``score`` field,
plus a workout's duration, derived from ``end - start`` (source field ``end``).
"""

from __future__ import annotations

import pandera.polars as pa
import polars as pl

from schemas.vendors.fetched import FetchedRecord, FetchedValue

NAME = "whoop"

DURATION_FIELD = "end"
"""Source field of a workout's duration (``end - start``)."""


class WhoopRecord(FetchedRecord):
    """One scored recovery, sleep, cycle or workout."""


class WhoopValue(FetchedValue):
    """One mapped field of a scored record."""

    @pa.check("value", name="workout_ends_after_it_starts")
    @classmethod
    def _duration_not_negative(cls, data: pa.PolarsData) -> pl.LazyFrame:
        derived = pl.col("source_field") == DURATION_FIELD
        return data.lazyframe.select((~derived | (pl.col("value") >= 0)).fill_null(True))
