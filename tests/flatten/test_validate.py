"""`all_pass`, the one-query shortcut before Pandera: it may only skip a validation Pandera passes.

Each case breaks one rule of a schema; `all_pass` must then say False (Pandera validates and names
the failure). The hostile-body tests check the resulting issues end to end.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pandera.errors
import pandera.polars
import polars as pl
import pytest

from schemas.canonical import CANONICAL_SCHEMA, CanonicalRow
from schemas.vendors.generic import GenericEvent, GenericValue
from tasks.flatten.validate import all_pass

NOW = datetime.now(UTC).replace(microsecond=0)


def canonical(**changes: object) -> pl.DataFrame:
    row: dict[str, object] = {
        "user_id": "u1",
        "device_type": "oura",
        "metric_type": "readiness_score",
        "value": 80.0,
        "unit": "score",
        "timestamp": NOW - timedelta(days=1),
        "file_no": 0,
        "record_index": 0,
        "source_field": "data.readiness_score",
    }
    good = pl.DataFrame([row, row], schema=CANONICAL_SCHEMA)
    return good.with_columns(
        pl.when(pl.int_range(pl.len()) == 1).then(pl.lit(v, good.schema[k])).otherwise(pl.col(k))
        if v is not None
        else pl.when(pl.int_range(pl.len()) == 1).then(None).otherwise(pl.col(k))
        for k, v in changes.items()
    )


def events(**changes: object) -> pl.DataFrame:
    frame = pl.DataFrame(
        {
            "file_no": [0, 1],
            "record_index": [0, 0],
            "path": ["", ""],
            "user_id": ["u1", "u2"],
            "stamp_field": ["timestamp", "timestamp"],
            "timestamp": [NOW, NOW],
        },
        schema_overrides={"timestamp": pl.Datetime("us", "UTC")},
    )
    return frame.with_columns(pl.Series(k, v, dtype=frame.schema[k]) for k, v in changes.items())


def values(**changes: object) -> pl.DataFrame:
    frame = pl.DataFrame(
        {
            "file_no": [0, 1],
            "record_index": [0, 0],
            "source_field": ["a", "b"],
            "raw": [None, "12"],
            "value": [1.0, 12.0],
        },
        schema_overrides={"raw": pl.String},
    )
    return frame.with_columns(pl.Series(k, v, dtype=frame.schema[k]) for k, v in changes.items())


Model = type[pandera.polars.DataFrameModel]
CASES: list[tuple[Model, Callable[[], pl.DataFrame]]] = [
    (CanonicalRow, lambda: canonical(user_id="")),
    (CanonicalRow, lambda: canonical(user_id="   ")),
    (CanonicalRow, lambda: canonical(user_id="a\x00b")),
    (CanonicalRow, lambda: canonical(user_id="x" * 257)),
    (CanonicalRow, lambda: canonical(user_id=None)),
    (CanonicalRow, lambda: canonical(device_type="fridge")),
    (CanonicalRow, lambda: canonical(metric_type="mood")),
    (CanonicalRow, lambda: canonical(value=float("nan"))),
    (CanonicalRow, lambda: canonical(value=float("inf"))),
    (CanonicalRow, lambda: canonical(value=1e9)),
    (CanonicalRow, lambda: canonical(value=None)),
    (CanonicalRow, lambda: canonical(unit="kg")),
    (CanonicalRow, lambda: canonical(timestamp=NOW + timedelta(days=30))),
    (CanonicalRow, lambda: canonical(timestamp=datetime(1960, 1, 1, tzinfo=UTC))),
    (CanonicalRow, lambda: canonical(file_no=-1)),
    (CanonicalRow, lambda: canonical(record_index=-1)),
    (CanonicalRow, lambda: canonical().with_columns(pl.col("file_no").cast(pl.Int32))),
    (CanonicalRow, lambda: canonical().select(reversed(CANONICAL_SCHEMA))),
    (GenericEvent, lambda: events(user_id=["u1", None])),
    (GenericEvent, lambda: events(user_id=["u1", " "])),
    (GenericEvent, lambda: events(timestamp=[NOW, None])),
    (GenericEvent, lambda: events(record_index=[0, -3])),
    (GenericValue, lambda: values(value=[1.0, None])),
    (GenericValue, lambda: values(value=[1.0, float("-inf")])),
    (GenericValue, lambda: values(file_no=[-1, 0])),
]


@pytest.mark.parametrize(("model", "make"), CASES)
def test_a_frame_pandera_fails_never_passes_the_shortcut(
    model: Model, make: Callable[[], pl.DataFrame]
) -> None:
    frame = make()
    assert not all_pass(model.to_schema(), frame)
    with pytest.raises(pandera.errors.SchemaErrors):
        model.validate(frame, lazy=True)


@pytest.mark.parametrize(
    ("model", "frame"),
    [(CanonicalRow, canonical()), (GenericEvent, events()), (GenericValue, values())],
)
def test_a_frame_pandera_passes_passes_the_shortcut(model: Model, frame: pl.DataFrame) -> None:
    model.validate(frame, lazy=True)
    assert all_pass(model.to_schema(), frame)
