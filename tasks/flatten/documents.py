"""The walk every pointer vendor's fetched documents share (Oura, WHOOP, Fitbit, Withings, Polar).

A fetched body is one document or a page of them (``{"data": [...]}``, ``{"records": [...]}``, a
bare list): each element is one record, stamped by one of its fields. A `DocumentSpec` says which
(dotted) fields map to which metric; fields nobody maps are drift unless listed as ignored.
Vendor modules add what is theirs (Oura sample series, WHOOP's ``end - start``, Withings'
``value x 10^unit``, Polar's ISO durations) around these steps.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import pandera.polars
import polars as pl

from schemas.catalogue import CATALOGUE
from schemas.vendors.fetched import MAX_UTC_OFFSET_S
from tasks.flatten.columns import (
    Batch,
)
from tasks.flatten.issues import (
    file_issue,
    stamp_issue,
    user_issue,
    value_issue,
)
from tasks.flatten.mapping import (
    Target,
    mapping_frame,
)
from tasks.flatten.model import (
    Flattened,
    FlattenInput,
    Issue,
)
from tasks.flatten.timestamps import (
    representable,
)
from tasks.flatten.validate import (
    assemble,
)
from tasks.flatten.values import (
    excerpt,
    number_columns,
)

CONTEXT_USER = "context.user_id"
NAIVE_FORMATS = ("%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f")
"""Device-local date-times without an offset (Polar ``start-time``, Fitbit ``tempCore``)."""


@dataclass(frozen=True)
class DocumentSpec:
    """How one fetched resource maps: its stamp, its (dotted) fields and what is not drift."""

    stamp: str
    expected_stamp: str
    fields: Mapping[str, Target] = field(default_factory=dict)
    ignored: frozenset[str] = frozenset()
    """Fields the spec deliberately does not map: not loaded and not reported as drift."""
    handled: frozenset[str] = frozenset()
    """Fields the vendor module reads itself (sample series, measures): not walked."""

    @cached_property
    def containers(self) -> frozenset[str]:
        """Objects that hold mapped fields (``score``, ``score.stage_summary``)."""
        parts = (path.split(".") for path in self.fields)
        return frozenset(".".join(p[:n]) for p in parts for n in range(1, len(p)))


def contributors(container: str, prefix: str) -> dict[str, Target]:
    """``container.K -> prefix + K`` for every catalogue metric named ``prefix + K``."""
    return {
        f"{container}.{name.removeprefix(prefix)}": Target(name)
        for name in CATALOGUE
        if name.startswith(prefix)
    }


def build_mapping(
    specs: Mapping[str, DocumentSpec],
) -> tuple[dict[str, dict[str, int]], pl.DataFrame]:
    """Map ids per spec key (``{spec key: {dotted field: map_id}}``) and the mapping frame."""
    ids: dict[str, dict[str, int]] = {}
    targets: list[Target] = []
    for key, spec in specs.items():
        ids[key] = {}
        for path, target in spec.fields.items():
            ids[key][path] = len(targets)
            targets.append(target)
    return ids, mapping_frame(targets)


def joined(path: str, name: str) -> str:
    """``data[2]`` + ``score`` -> ``data[2].score``; a single document has the empty path."""
    return f"{path}.{name}" if path else name


@dataclass
class DocumentBatch(Batch):
    """A `Batch` whose records also say where their user came from, how a local stamp becomes
    an instant and, for a sample series, the seconds between items."""

    user_fields: list[str] = field(default_factory=list)
    expected_stamps: list[str] = field(default_factory=list)
    local_offsets: list[Any] = field(default_factory=list)
    offset_fields: list[str | None] = field(default_factory=list)
    intervals: list[Any] = field(default_factory=list)
    is_samples: list[bool] = field(default_factory=list)

    def add_document_record(
        self,
        item: FlattenInput,
        *,
        record_index: int,
        path: str,
        user: Any,
        user_field: str,
        stamp_field: str,
        stamp: Any,
        expected_stamp: str,
        local_offset: tuple[str, Any] | None = None,
        interval: Any = None,
        is_samples: bool = False,
    ) -> int:
        """Append one record; `local_offset` is (its field, seconds east of UTC) when the stamp
        is device-local time without an offset."""
        position = self.add_record(
            file_no=item.file_no,
            record_index=record_index,
            path=path,
            user=user,
            stamp_field=stamp_field,
            stamp=stamp,
            device_type=item.vendor,
        )
        self.user_fields.append(user_field)
        self.expected_stamps.append(expected_stamp)
        self.offset_fields.append(None if local_offset is None else local_offset[0])
        self.local_offsets.append(None if local_offset is None else local_offset[1])
        self.intervals.append(interval)
        self.is_samples.append(is_samples)
        return position

    def records_frame(self) -> pl.DataFrame:
        """`FetchedRecord` columns: a stamp without an offset becomes local time - offset."""
        frame = super().records_frame()
        offsets = number_columns(self.local_offsets)["value"].alias("local_offset_s")
        intervals = number_columns(self.intervals)["value"].alias("sample_interval_s")
        texts = pl.Series(
            "text", [s if type(s) is str else None for s in self.stamps], dtype=pl.String
        )
        text = pl.col("text").str.strip_chars()
        naive = pl.coalesce(
            *(
                text.str.to_datetime(fmt, strict=False, time_unit="us", time_zone="UTC")
                for fmt in NAIVE_FORMATS
            )
        )
        offset = pl.col("local_offset_s")
        # an offset beyond 18 h fails its own check; stamping with 0 meanwhile keeps that
        # record's issue to one (not a second one for a missing stamp)
        shift = (
            pl.when(offset.is_null())
            .then(None)
            .when(offset.abs() <= MAX_UTC_OFFSET_S)
            .then(offset)
            .otherwise(pl.lit(0.0))
        )
        local = representable(naive - pl.duration(seconds=shift))
        return (
            frame.with_columns(
                texts,
                offsets,
                intervals,
                pl.Series("is_samples", self.is_samples, dtype=pl.Boolean),
            )
            .with_columns(timestamp=pl.coalesce(pl.col("timestamp"), local))
            .drop("text")
        )


def context_user(batch: Batch, item: FlattenInput, fix: str) -> Any | None:
    """The user id the document does not carry; a whole-file issue when it is missing."""
    user = item.context.get("user_id")
    if user is None:
        batch.issues.append(file_issue(item.file_no, CONTEXT_USER, "the user id", user, fix))
    return user


def page_elements(
    batch: Batch, item: FlattenInput, wrapper: str | None, expected: str
) -> list[tuple[str, Any]] | None:
    """(path, element) of a single document, a page ``{wrapper: [...]}`` or a bare list.

    A page's ``next_token`` and other keys are paging, not data. None (and a whole-file issue)
    when the body is none of these.
    """
    payload = item.payload
    if wrapper is not None and type(payload) is dict and wrapper in payload:
        elements = payload[wrapper]
        if elements is None:
            return []
        if type(elements) is list:
            return [(f"{wrapper}[{n}]", element) for n, element in enumerate(elements)]
        fix = f"a page holds its documents in a list under {wrapper!r}"
        batch.issues.append(file_issue(item.file_no, wrapper, "a list", elements, fix))
        return None
    if type(payload) is dict:
        return [("", payload)]
    if type(payload) is list:
        return [(f"[{n}]", element) for n, element in enumerate(payload)]
    fix = f"only {item.vendor} {item.resource} documents belong here"
    batch.issues.append(file_issue(item.file_no, "body", expected, payload, fix))
    return None


def element_issue(
    item: FlattenInput, record_index: int, path: str, expected: str, found: Any, outcome: str
) -> Issue:
    """A record (or part of one) that is not the shape it should be."""
    found_text = excerpt(found)
    field_name = path or "body"
    reason = f"{field_name}: expected {expected}, found {found_text}; {outcome}"
    return Issue(item.file_no, record_index, field_name, reason, expected, found_text)


def walk_fields(
    batch: Batch,
    item: FlattenInput,
    *,
    spec: DocumentSpec,
    ids: Mapping[str, int],
    record: int,
    record_index: int,
    path: str,
    element: Mapping[str, Any],
    prefix: str = "",
) -> None:
    """Add every mapped field of `element` (recursing into containers); the rest is drift."""
    for key, value in element.items():
        dotted = prefix + str(key)
        map_id = ids.get(dotted)
        if map_id is not None:
            batch.add_value(record, dotted, map_id, value)
        elif dotted in spec.containers:
            if type(value) is dict:
                walk_fields(
                    batch,
                    item,
                    spec=spec,
                    ids=ids,
                    record=record,
                    record_index=record_index,
                    path=path,
                    element=value,
                    prefix=dotted + ".",
                )
            elif value is not None:
                batch.issues.append(
                    element_issue(
                        item,
                        record_index,
                        joined(path, dotted),
                        "an object",
                        value,
                        "the values inside it were skipped, the record's others kept",
                    )
                )
        elif dotted != spec.stamp and dotted not in spec.ignored and dotted not in spec.handled:
            batch.drift[f"{item.vendor}:{item.resource}:{dotted}"] += 1


ValueHook = Callable[[pl.DataFrame, pl.DataFrame], pl.DataFrame]
"""(values, records) -> values: a vendor's derived values (durations, powers of ten)."""
DescribeHook = Callable[[dict[str, Any], str, str], Issue | None]
"""(failing value row, column, record path) -> the vendor's own issue, or None."""


def finish(
    batch: DocumentBatch,
    *,
    record_model: type[pandera.polars.DataFrameModel],
    value_model: type[pandera.polars.DataFrameModel],
    mapping: pl.DataFrame,
    prepare_values: ValueHook | None = None,
    describe_extra: DescribeHook | None = None,
) -> Flattened:
    """Validate, map, convert and stamp the batch; issues name file, record and field."""
    if not batch.file_no:
        return Flattened(rows=Flattened.empty().rows, issues=batch.issues, drift=batch.drift)
    records = batch.records_frame()
    values = _with_offsets(batch.values_frame(key_column="item"), records)
    if prepare_values is not None:
        values = prepare_values(values, records)

    def describe_record(row: dict[str, Any], column: str, check: str) -> Issue:
        position = row["record_pos"]
        file_no, record_index, path = row["file_no"], row["record_index"], row["path"]
        if column == "user_id":
            field_name = batch.user_fields[position]
            return user_issue(file_no, record_index, field_name, batch.users[position])
        if column == "sample_interval_s":
            return stamp_issue(
                file_no,
                record_index,
                joined(path, "interval"),
                batch.intervals[position],
                "seconds between samples, a number > 0 and <= 86400",
            )
        offset_field = batch.offset_fields[position]
        if column == "local_offset_s" and offset_field is not None:
            return stamp_issue(
                file_no,
                record_index,
                offset_field,
                batch.local_offsets[position],
                "the UTC offset of the local start time, within 18 hours",
            )
        expected = batch.expected_stamps[position]
        if offset_field is not None:
            expected += f" (a local date-time is made UTC with {offset_field})"
        field_name = joined(path, row["stamp_field"])
        return stamp_issue(file_no, record_index, field_name, batch.stamps[position], expected)

    def describe_value(row: dict[str, Any], column: str, check: str) -> Issue:
        path = batch.path[row["record_pos"]]
        if describe_extra is not None:
            issue = describe_extra(row, column, path)
            if issue is not None:
                return issue
        field_name = joined(path, row["source_field"])
        if row["item"] is not None:
            field_name += f"[{row['item']}]"
        return value_issue(row, field_name)

    rows, issues = assemble(
        records=records,
        record_model=record_model,
        describe_record=describe_record,
        values=values,
        value_model=value_model,
        describe_value=describe_value,
        mapping=mapping,
    )
    return Flattened(rows=rows, issues=batch.issues + issues, drift=batch.drift)


def _with_offsets(values: pl.DataFrame, records: pl.DataFrame) -> pl.DataFrame:
    """``offset``: 0 for a scalar field, item x interval for a sample item."""
    item = pl.col("item").cast(pl.Int64, strict=False)
    return (
        values.join(records.select("record_pos", "sample_interval_s"), on="record_pos", how="left")
        .with_columns(
            offset=pl.when(pl.col("item").is_null())
            .then(pl.lit(0.0))
            .otherwise(item.cast(pl.Float64) * pl.col("sample_interval_s"))
        )
        .drop("sample_interval_s")
    )


def flatten_each(
    items: Sequence[FlattenInput], walk: Callable[[DocumentBatch, FlattenInput], None]
) -> DocumentBatch:
    """Walk every body of a vendor group into one batch."""
    batch = DocumentBatch()
    for item in items:
        walk(batch, item)
    return batch
