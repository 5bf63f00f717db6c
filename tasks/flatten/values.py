"""Raw JSON values as text and numbers: excerpts for issues, user ids, numeric columns."""

from __future__ import annotations

import math
from typing import Any

import orjson
import polars as pl

from schemas.vendors.records import EXCERPT_LENGTH


def excerpt(value: Any) -> str:
    """A short JSON-like rendering of `value` for an issue (at most 200 characters)."""
    if value is None:
        return "nothing (missing)"
    if type(value) is float:
        text = repr(value)
    else:
        try:
            text = orjson.dumps(value).decode()
        except (TypeError, orjson.JSONEncodeError):
            text = repr(value)
    return text if len(text) <= EXCERPT_LENGTH else text[: EXCERPT_LENGTH - 1] + "…"


def user_text(value: Any) -> str | None:
    """The user id as text: strings as they are, integers (and integral floats) as digits."""
    kind = type(value)
    if kind is str:
        return value  # type: ignore[no-any-return]
    if kind is int:
        return str(value)
    if kind is float and math.isfinite(value) and value.is_integer():
        return str(int(value))
    return None


_NUMBER_TYPES = frozenset({int, float, type(None)})


def number_columns(values: list[Any]) -> pl.DataFrame:
    """Columns ``raw`` (String) and ``value`` (Float64) of raw JSON values.

    JSON numbers give ``value`` and a null ``raw``; numeric strings give both; booleans,
    non-numeric strings, objects and out-of-range numbers give ``raw`` and a null ``value``;
    ``None`` gives both null (the caller drops it: missing is not an error).
    """
    if set(map(type, values)) <= _NUMBER_TYPES:
        numbers = pl.Series("value", values, dtype=pl.Float64, strict=False)
        if numbers.null_count() == values.count(None):
            raw = pl.repeat(None, len(values), dtype=pl.String, eager=True).alias("raw")
            return pl.DataFrame([raw, numbers])
    coerced = [_coerce(value) for value in values]
    return pl.DataFrame(
        {"raw": [c[1] for c in coerced], "value": [c[0] for c in coerced]},
        schema={"raw": pl.String, "value": pl.Float64},
    )


def _coerce(value: Any) -> tuple[float | None, str | None]:
    kind = type(value)
    if value is None:
        return None, None
    if kind is int or kind is float:
        try:
            return float(value), None
        except OverflowError:
            return None, excerpt(value)
    if kind is str:
        try:
            return float(value), excerpt(value)
        except ValueError:
            return None, excerpt(value)
    return None, excerpt(value)
