"""The flatten stage's data types and the per-vendor module contract (`VendorFlatten`)."""

from __future__ import annotations

import collections
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final, NamedTuple, Protocol

import polars as pl

from schemas.canonical import CANONICAL_SCHEMA

_NO_CONTEXT: Mapping[str, Any] = MappingProxyType({})


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


class FlattenInput(NamedTuple):
    """One landed body of a batch: which file it is, what it is, and what it does not say.

    A named tuple, not a frozen dataclass: a batch makes one per file, and this is ~3x cheaper
    to build (~0.3 us, against ~0.9 us) and smaller.
    """

    file_no: int
    vendor: str
    resource: str
    payload: Any
    context: Mapping[str, Any] = _NO_CONTEXT


Flattener = Callable[[Sequence[FlattenInput]], Flattened]
"""A vendor's batch flattener: every body of one (vendor, resource) group of a batch at once."""

NOTIFICATION: Final = "notification"
"""The resource of a pointer body (Oura, WHOOP, Fitbit, Withings, Polar): the data is fetched."""

POINTER: Final = None
"""`RESOURCES` value of a pointer resource: the body only points at data held by the vendor, so
it gives no rows and its file is recorded as deferred (the one place this is decided)."""


class UnrecognisedBody(ValueError):
    """The body is not any shape that route receives: quarantine the file with this reason."""


class VendorFlatten(Protocol):
    """The names each vendor module of `tasks.flatten` defines (see notes/flatten-shape.md)."""

    NAME: str
    """The route name, one of `landing.keys.VENDORS`."""
    EXPECTED: str
    """What `detect` recognises, for the reason of an unrecognised body."""
    RESOURCES: Mapping[str, Flattener | None]
    """resource -> its batch flattener, or POINTER (None) for a body that only points at data."""

    def detect(self, payload: Any, headers: Mapping[str, str]) -> str | None:
        """The resource of a body landed on this vendor's route (a key of RESOURCES), or None.

        `headers` have lower-case names.
        """
        ...
