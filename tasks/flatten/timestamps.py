"""Raw stamps (ISO 8601 / HAE text, dates, epoch seconds) -> UTC instants, or null."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import polars as pl

from schemas.canonical import EARLIEST_REPRESENTABLE, LATEST_REPRESENTABLE, TIMESTAMP_DTYPE
from tasks.flatten.values import number_columns

_TEXT_FORMATS = (
    "%Y-%m-%dT%H:%M:%S%.f%z",
    "%Y-%m-%d %H:%M:%S%.f%z",
    "%Y-%m-%d %H:%M:%S %z",
    "%Y-%m-%d",
)


def parse_timestamp_text(text: pl.Expr, formats: Sequence[str] = _TEXT_FORMATS) -> pl.Expr:
    """UTC instants from ISO 8601 / HAE text with an offset, or a bare date (midnight UTC).

    A date-time without an offset is ambiguous and gives null (the caller reports it).
    """
    cleaned = text.str.strip_chars().str.replace(r"[Zz]$", "+00:00")
    parsed = [
        representable(cleaned.str.to_datetime(fmt, strict=False, time_unit="us", time_zone="UTC"))
        for fmt in formats
    ]
    return pl.coalesce(*parsed)


def epoch_seconds(seconds: pl.Expr) -> pl.Expr:
    """UTC instants from epoch seconds (null when out of range)."""
    micros = (seconds * 1_000_000).round().cast(pl.Int64, strict=False)
    return representable(micros.cast(TIMESTAMP_DTYPE))


def representable(stamp: pl.Expr) -> pl.Expr:
    """`stamp`, or null past year 9999 (epoch ms read as s) or before year 1 (a huge negative
    epoch): such an instant cannot become a Python datetime, so it must not reach a Pandera
    failure case or an issue."""
    return pl.when(stamp.is_between(EARLIEST_REPRESENTABLE, LATEST_REPRESENTABLE)).then(stamp)


def timestamps(stamps: list[Any]) -> pl.Series:
    """UTC instants of raw stamps: text (ISO 8601, HAE, date) or epoch seconds; else null."""
    texts = pl.Series("text", [s if type(s) is str else None for s in stamps], dtype=pl.String)
    frame = pl.DataFrame([texts])
    text = pl.col("text")
    # one format first: a batch usually shares one; the others only when something is left
    parsed = frame.select(parse_timestamp_text(text, _TEXT_FORMATS[:1])).to_series()
    if parsed.null_count() > texts.null_count():
        parsed = frame.select(
            pl.coalesce(
                parse_timestamp_text(text), epoch_seconds(text.cast(pl.Float64, strict=False))
            )
        ).to_series()
    if texts.null_count() > stamps.count(None):
        numbers = number_columns([None if type(s) is str else s for s in stamps])["value"]
        parsed = pl.select(pl.coalesce(parsed, epoch_seconds(pl.lit(numbers)))).to_series()
    return parsed.alias("timestamp")


def stamp_hint(stamp: Any) -> str:
    """Extra advice for the two usual stamp mistakes: no zone, epoch milliseconds."""
    if type(stamp) is str and len(stamp) >= 19 and stamp[10:11] in ("T", " "):
        return " (a date-time needs a UTC offset such as Z or +02:00)"
    if type(stamp) in (int, float) and abs(stamp) >= 1e11:
        return " (looks like epoch milliseconds: send seconds)"
    return ""
