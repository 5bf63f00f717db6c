"""What every vendor flattener shares: the result types, value and timestamp coercion, unit
conversions and turning Pandera failure cases into quarantine issues.
"""

from __future__ import annotations

import collections
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import orjson
import pandera.errors
import polars as pl

from schemas.canonical import (
    CANONICAL_SCHEMA,
    EARLIEST_REPRESENTABLE,
    EARLIEST_TIMESTAMP,
    FUTURE_TOLERANCE,
    LATEST_REPRESENTABLE,
    TIMESTAMP_DTYPE,
    CanonicalRow,
)
from schemas.catalogue import unit_of
from schemas.vendors.records import EXCERPT_LENGTH


@dataclass(frozen=True)
class Issue:
    """One quarantined record or value (or the whole file when `record_index` is None)."""

    file_no: int
    record_index: int | None
    field: str
    reason: str
    expected: str
    found: str


@dataclass
class Flattened:
    """Canonical rows of a batch, the quarantined records and the keys nobody maps yet."""

    rows: pl.DataFrame
    issues: list[Issue] = field(default_factory=list)
    drift: collections.Counter[str] = field(default_factory=collections.Counter)

    @classmethod
    def empty(cls) -> Flattened:
        return cls(rows=pl.DataFrame(schema=CANONICAL_SCHEMA))

    @classmethod
    def concat(cls, parts: Sequence[Flattened]) -> Flattened:
        """One result from several (e.g. one per vendor group)."""
        frames = [part.rows for part in parts if part.rows.height]
        rows = pl.concat(frames) if frames else pl.DataFrame(schema=CANONICAL_SCHEMA)
        drift: collections.Counter[str] = collections.Counter()
        for part in parts:
            drift.update(part.drift)
        issues = sorted(
            (issue for part in parts for issue in part.issues),
            key=lambda i: (i.file_no, -1 if i.record_index is None else i.record_index),
        )
        return cls(rows=rows, issues=issues, drift=drift)


@dataclass(frozen=True)
class FlattenInput:
    """One landed body of a batch: which file it is, what it is, and what it does not say."""

    file_no: int
    vendor: str
    resource: str
    payload: Any
    context: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))


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


def failing_rows(error: pandera.errors.SchemaErrors) -> pl.DataFrame:
    """``index`` / ``column`` / ``check`` of each failing row and column (one row per pair).

    A schema-level failure (null index: a missing column, a wrong dtype) cannot come from a
    payload because the frames are built with explicit dtypes: it is a bug and is raised.
    """
    cases = pl.DataFrame(error.failure_cases)
    if cases["index"].null_count():
        raise RuntimeError(f"flatten built a frame that breaks its own schema: {error}") from error
    return (
        cases.select(pl.col("index").cast(pl.Int64), "column", "check")
        .unique(subset=["index", "column"], keep="first", maintain_order=True)
        .sort("index", maintain_order=True)
    )


Describe = Callable[[dict[str, Any], str, str], Issue]
"""(failing row as a dict, failing column, failing check) -> the issue to report."""


def validate_frame(
    model: type[pandera.polars.DataFrameModel], frame: pl.DataFrame, describe: Describe
) -> tuple[pl.DataFrame, list[Issue]]:
    """Validate the model's columns of `frame` (lazy) and return the passing rows (all columns)
    and one issue per failing (row, column)."""
    columns = list(model.to_schema().columns)
    try:
        model.validate(frame.select(columns), lazy=True)
    except pandera.errors.SchemaErrors as error:
        failures = failing_rows(error)
        issues = [
            describe(frame.row(position, named=True), column, check)
            for position, column, check in failures.iter_rows()
        ]
        bad = failures["index"].unique().implode()
        good = frame.with_row_index("_pos").filter(~pl.col("_pos").is_in(bad))
        return good.drop("_pos"), issues
    return frame, []


def validate_canonical(rows: pl.DataFrame) -> tuple[pl.DataFrame, list[Issue]]:
    """The last gate: rows that break `CanonicalRow` are quarantined (one issue per record
    and field, e.g. every sample of a far-future summary gives one issue)."""
    valid, issues = validate_frame(
        CanonicalRow, rows.select(list(CANONICAL_SCHEMA)), _canonical_issue
    )
    seen: set[tuple[int, int | None, str]] = set()
    unique: list[Issue] = []
    for issue in issues:
        key = (issue.file_no, issue.record_index, issue.field)
        if key not in seen:
            seen.add(key)
            unique.append(issue)
    return valid, unique


def assemble(
    *,
    records: pl.DataFrame,
    record_model: type[pandera.polars.DataFrameModel],
    describe_record: Describe,
    values: pl.DataFrame,
    value_model: type[pandera.polars.DataFrameModel],
    describe_value: Describe,
    mapping: pl.DataFrame,
) -> tuple[pl.DataFrame, list[Issue]]:
    """Validate, map, convert and stamp one vendor group; return canonical rows and issues.

    `records` holds the record model's columns plus ``record_pos`` (its row position) and
    ``device_type``; `values` the value model's columns plus ``record_pos``, ``map_id`` and
    optionally ``offset`` (seconds after the record's stamp). A failing record takes all its
    values with it; a failing value only itself.
    """
    good_records, issues = validate_frame(record_model, records, describe_record)
    if good_records.height < records.height:
        values = values.filter(pl.col("record_pos").is_in(good_records["record_pos"].implode()))
    good_values, value_issues = validate_frame(value_model, values, describe_value)
    issues.extend(value_issues)
    offset = pl.col("offset") if "offset" in good_values.columns else pl.lit(0, pl.Int64)
    record_columns = good_records.select("record_pos", "user_id", "device_type", "timestamp")
    rows = (
        convert(good_values, mapping)
        .join(record_columns, on="record_pos", how="left")
        .with_columns(timestamp=representable(pl.col("timestamp") + pl.duration(seconds=offset)))
    )
    canonical, canonical_issues = validate_canonical(rows)
    issues.extend(canonical_issues)
    return canonical, issues


def _canonical_issue(row: dict[str, Any], column: str, check: str) -> Issue:
    source = row["source_field"]
    if column == "timestamp":
        expected = (
            f"an instant between {EARLIEST_TIMESTAMP:%Y-%m-%d} and now + "
            f"{FUTURE_TOLERANCE.total_seconds() / 3600:g} h"
        )
        stamp = row["timestamp"]
        found = (
            "before year 1 or past year 9999" if stamp is None else f"{stamp:%Y-%m-%dT%H:%M:%S.%fZ}"
        )
        reason = (
            f"timestamp of {source}: expected {expected}, found {found}; the record is "
            "quarantined (a far-future or pre-1970 stamp is usually ms read as s or a wrong "
            "clock: fix the sender)"
        )
        return Issue(row["file_no"], row["record_index"], "timestamp", reason, expected, found)
    found = excerpt(row.get(column))
    expected = {
        "value": "a finite number after unit conversion",
        "unit": f"the catalogue unit of {row['metric_type']}",
        "user_id": "a user id without NUL characters (Postgres text refuses them)",
    }.get(column, f"a value that passes {check}")
    reason = f"{source} ({column}): expected {expected}, found {found}; not loaded"
    return Issue(row["file_no"], row["record_index"], source, reason, expected, found)


def value_issue(row: Mapping[str, Any], field_name: str) -> Issue:
    """The issue of a value row (``raw``, ``value``) that is present but not a finite number."""
    file_no, record_index, raw, value = (
        row["file_no"],
        row["record_index"],
        row["raw"],
        row["value"],
    )
    if value is None:
        expected = "a number or numeric string"
        found = raw if raw is not None else "null"
        reason = (
            f"{field_name}: expected {expected}, found {found}; this value is quarantined, "
            "the record's other values were kept"
        )
    else:
        expected = "a finite number"
        found = raw if raw is not None else repr(value)
        reason = (
            f"{field_name}: expected {expected}, found {found} (NaN, infinity or beyond the "
            "float range); this value is quarantined, the record's other values were kept"
        )
    return Issue(file_no, record_index, field_name, reason, expected, found)


def stamp_issue(
    file_no: int, record_index: int | None, field_name: str, stamp: Any, expected: str
) -> Issue:
    """The issue of a record whose stamp is missing or unusable."""
    found = excerpt(stamp)
    reason = f"{field_name}: expected {expected}, found {found}{stamp_hint(stamp)}; " + (
        "the file was rejected" if record_index is None else "the record was quarantined"
    )
    return Issue(file_no, record_index, field_name, reason, expected, found)


def user_issue(file_no: int, record_index: int | None, field_name: str, user: Any) -> Issue:
    """The issue of a record whose user id is missing or unusable."""
    expected = "a non-blank user id (string or integer, at most 256 characters)"
    found = excerpt(user)
    reason = f"{field_name}: expected {expected}, found {found}; " + (
        "the file was rejected" if record_index is None else "the record was quarantined"
    )
    return Issue(file_no, record_index, field_name, reason, expected, found)


def file_issue(file_no: int, field_name: str, expected: str, found: Any, fix: str) -> Issue:
    """A whole-file issue (the body as a whole is unusable)."""
    found_text = excerpt(found)
    reason = f"{field_name}: expected {expected}, found {found_text}; the file was rejected: {fix}"
    return Issue(file_no, None, field_name, reason, expected, found_text)


@dataclass
class Batch:
    """Column lists of one vendor group, filled by the vendor's walk over its payloads.

    Records are appended one by one; values in chunks (a scalar is a chunk of one, a keyed map
    such as Garmin samples or a generic `data` object a chunk of many) so per-value Python work
    is two list extends.
    """

    issues: list[Issue] = field(default_factory=list)
    drift: collections.Counter[str] = field(default_factory=collections.Counter)
    file_no: list[int] = field(default_factory=list)
    record_index: list[int] = field(default_factory=list)
    path: list[str] = field(default_factory=list)
    users: list[Any] = field(default_factory=list)
    stamp_field: list[str] = field(default_factory=list)
    stamps: list[Any] = field(default_factory=list)
    device_type: list[str] = field(default_factory=list)
    chunk_record: list[int] = field(default_factory=list)
    chunk_field: list[str] = field(default_factory=list)
    chunk_map: list[int] = field(default_factory=list)
    chunk_length: list[int] = field(default_factory=list)
    keys: list[Any] = field(default_factory=list)
    values: list[Any] = field(default_factory=list)
    chunk_text: dict[str, list[str | None]] = field(default_factory=dict)
    """Extra per-chunk String columns a vendor appends to itself (e.g. HAE ``units``)."""

    def add_record(
        self,
        *,
        file_no: int,
        record_index: int,
        path: str,
        user: Any,
        stamp_field: str,
        stamp: Any,
        device_type: str,
    ) -> int:
        """Append one record; returns its position (``record_pos`` of its values)."""
        self.file_no.append(file_no)
        self.record_index.append(record_index)
        self.path.append(path)
        self.users.append(user)
        self.stamp_field.append(stamp_field)
        self.stamps.append(stamp)
        self.device_type.append(device_type)
        return len(self.file_no) - 1

    def add_value(self, record_pos: int, source_field: str, map_id: int, value: Any) -> bool:
        """Append one scalar value; ``None`` is skipped (missing is not an error): False."""
        if value is None:
            return False
        self.chunk_record.append(record_pos)
        self.chunk_field.append(source_field)
        self.chunk_map.append(map_id)
        self.chunk_length.append(1)
        self.keys.append(None)
        self.values.append(value)
        return True

    def add_keyed(
        self, record_pos: int, source_field: str, map_id: int, values: Mapping[Any, Any]
    ) -> None:
        """Append a ``{key: value}`` map (Garmin samples, a generic `data` object)."""
        self.chunk_record.append(record_pos)
        self.chunk_field.append(source_field)
        self.chunk_map.append(map_id)
        self.chunk_length.append(len(values))
        self.keys.extend(values.keys())
        self.values.extend(values.values())

    def records_frame(self) -> pl.DataFrame:
        """`RecordFrame` columns plus ``record_pos`` and ``device_type``."""
        frame = pl.DataFrame(
            {
                "file_no": self.file_no,
                "record_index": self.record_index,
                "path": self.path,
                "user_id": [user_text(user) for user in self.users],
                "stamp_field": self.stamp_field,
                "device_type": self.device_type,
            },
            schema={
                "file_no": pl.Int64,
                "record_index": pl.Int64,
                "path": pl.String,
                "user_id": pl.String,
                "stamp_field": pl.String,
                "device_type": pl.String,
            },
        )
        return (
            frame.with_columns(timestamp=timestamps(self.stamps))
            .with_row_index("record_pos")
            .with_columns(pl.col("record_pos").cast(pl.Int64))
        )

    def values_frame(self, *, key_column: str | None = None) -> pl.DataFrame:
        """`ValueFrame` columns plus ``record_pos`` and ``map_id`` (and the keys of keyed maps
        as `key_column`, null for scalars); rows whose value was null are already gone."""
        chunks = pl.DataFrame(
            {
                "record_pos": self.chunk_record,
                "source_field": self.chunk_field,
                "map_id": self.chunk_map,
                **self.chunk_text,
            },
            schema={
                "record_pos": pl.Int64,
                "source_field": pl.String,
                "map_id": pl.Int64,
                **dict.fromkeys(self.chunk_text, pl.String),
            },
        )
        lengths = pl.Series(self.chunk_length, dtype=pl.Int64)
        chunk_of_row = pl.select(
            pl.int_range(0, len(lengths), dtype=pl.Int64).repeat_by(lengths).explode()
        ).to_series()
        records = pl.DataFrame(
            {"file_no": self.file_no, "record_index": self.record_index},
            schema={"file_no": pl.Int64, "record_index": pl.Int64},
        )
        frame = chunks[chunk_of_row] if len(chunk_of_row) else chunks.clear()
        frame = pl.concat(
            [
                records[frame["record_pos"]] if frame.height else records.clear(),
                frame,
                number_columns(self.values),
            ],
            how="horizontal",
        )
        if key_column is not None:
            keys = pl.Series(key_column, self.keys, dtype=pl.String, strict=False)
            frame = frame.with_columns(keys)
        return frame.filter(pl.col("value").is_not_null() | pl.col("raw").is_not_null())
