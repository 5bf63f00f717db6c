"""`Batch`: the column lists a vendor's walk over its payloads fills, turned into frames."""

from __future__ import annotations

import collections
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from tasks.flatten.model import Issue
from tasks.flatten.timestamps import timestamps
from tasks.flatten.values import number_columns, user_text


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
