"""The flatten stage: landed vendor bodies -> canonical long rows (spec section 2).

Pure functions, no I/O. `flatten` is the public per-body contract; `flatten_many` is the batched
form the ingest flow uses (one frame build and one validation per vendor group, not per file),
returning rows with lineage, quarantine issues and schema drift. `resource_of` tells what a
landed body is from its route, body and headers. Each vendor is one module listed in `registry`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

import polars as pl

from schemas.canonical import ROW_COLUMNS
from tasks.flatten.model import (
    NOTIFICATION,
    POINTER,
    Flattened,
    Flattener,
    FlattenInput,
    Issue,
    UnrecognisedBody,
    VendorFlatten,
)
from tasks.flatten.registry import FLATTENERS, REGISTRY, is_pointer, resource_of

__all__ = [
    "FLATTENERS",
    "NOTIFICATION",
    "POINTER",
    "REGISTRY",
    "FlattenInput",
    "Flattened",
    "Issue",
    "UnrecognisedBody",
    "VendorFlatten",
    "flatten",
    "flatten_many",
    "is_pointer",
    "resource_of",
]


def flatten(
    vendor: str, resource: str, payload: Any, context: Mapping[str, Any] | None = None
) -> pl.DataFrame:
    """Canonical rows of one body: user_id, device_type, metric_type, value, unit, timestamp.

    Only good rows: quarantined values and records are left out (see `flatten_many` for the
    issues, drift and lineage).
    """
    item = FlattenInput(0, vendor, resource, payload, MappingProxyType(dict(context or {})))
    return flatten_many([item]).rows.select(ROW_COLUMNS)


def flatten_many(items: Sequence[FlattenInput]) -> Flattened:
    """Flatten a batch: group by flattener, build and validate each group's frames once.

    Pointer bodies (POINTER resources) give no rows and no issues.
    """
    groups: dict[Flattener, list[FlattenInput]] = {}
    unknown: list[Issue] = []
    for item in items:
        key = (item.vendor, item.resource)
        if key not in FLATTENERS:
            unknown.append(_unknown_kind(item))
        elif (flattener := FLATTENERS[key]) is not POINTER:
            groups.setdefault(flattener, []).append(item)
    parts = [flattener(group) for flattener, group in groups.items()]
    parts.append(Flattened(rows=Flattened.empty().rows, issues=unknown))
    return Flattened.concat(parts)


def _unknown_kind(item: FlattenInput) -> Issue:
    known = ", ".join(f"{vendor}/{resource}" for vendor, resource in FLATTENERS)
    found = f"{item.vendor}/{item.resource}"
    reason = (
        f"vendor/resource: expected one of {known}, found {found}; the file was not flattened "
        "(no flattener for that body kind yet)"
    )
    return Issue(item.file_no, None, "vendor/resource", reason, "a known vendor/resource", found)
