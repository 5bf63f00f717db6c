"""Withings ``Measure - Getmeas`` pages (spec section 7).

Body: ``{"status": 0, "body": {"measuregrps": [{"date", "category", "attrib", "measures":
[{"value", "type", "unit"}]}], "more", "offset"}}``. A group is one record stamped at ``date``
(epoch seconds); each measure of a mapped type is one value whose real value is
``value x 10^unit``. One `WithingsGroup` row per flattened group, one `WithingsMeasure` row per
mapped measure, carrying its power of ten.
"""

from __future__ import annotations

import pandera.polars as pa
import polars as pl

from schemas.vendors.fetched import FetchedRecord, FetchedValue

NAME = "withings"

MAX_EXPONENT = 30
"""Withings scales by small powers of ten (-3 ... 3 in practice)."""


class WithingsGroup(FetchedRecord):
    """One measure group of category 1 (a real measurement) whose user is known."""


class WithingsMeasure(FetchedValue):
    """One measure of a mapped type."""

    exponent: pl.Float64 = pa.Field(nullable=True)
    """The measure's ``unit``: the real value is ``value x 10^unit``."""

    @pa.check("exponent", name="integer_power_of_ten")
    @classmethod
    def _exponent_integer(cls, data: pa.PolarsData) -> pl.LazyFrame:
        exponent = pl.col("exponent")
        usable = (exponent.round() == exponent) & (exponent.abs() <= MAX_EXPONENT)
        return data.lazyframe.select(usable.fill_null(False))
