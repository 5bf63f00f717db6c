"""The flatten stage: landed vendor bodies -> canonical long rows (spec section 2).

Pure functions, no I/O. `flatten` is the public per-body contract; `flatten_many` is the batched
form the ingest flow uses (one frame build and one validation per vendor group, not per file),
returning rows with lineage, quarantine issues and schema drift. `resource_of` tells what a
landed body is from its route, body and headers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any

import polars as pl

from schemas.canonical import ROW_COLUMNS
from tasks.flatten import apple_health, fitbit, garmin, generic, oura, polar, whoop, withings
from tasks.flatten.common import Flattened, FlattenInput, Issue
from tasks.flatten.resources import NOTIFICATION, UnrecognisedBody, resource_of

__all__ = [
    "FLATTENERS",
    "NOTIFICATION",
    "FlattenInput",
    "Flattened",
    "Issue",
    "UnrecognisedBody",
    "flatten",
    "flatten_many",
    "resource_of",
]

Flattener = Callable[[Sequence[FlattenInput]], Flattened]


def _no_rows(items: Sequence[FlattenInput]) -> Flattened:
    """Pointers, pings and verification calls carry no data (spec rule 2)."""
    return Flattened.empty()


_POINTER_RESOURCES: tuple[tuple[str, str], ...] = (
    *((vendor, NOTIFICATION) for vendor in ("oura", "whoop", "fitbit", "withings", "polar")),
    # the names the spec's examples use for the same pointer bodies
    ("oura", "webhook"),
    ("whoop", "webhook"),
    ("polar", "webhook"),
    ("withings", "notify"),
    ("garmin", "ping"),
)

FLATTENERS: Mapping[tuple[str, str], Flattener] = MappingProxyType(
    {
        ("generic", generic.RESOURCE): generic.flatten_batch,
        ("oura", generic.RESOURCE): generic.flatten_batch,
        ("apple_health", generic.RESOURCE): generic.flatten_batch,
        ("garmin", "push"): garmin.flatten_batch,
        ("apple_health", "hae"): apple_health.flatten_batch,
        **dict.fromkeys(_POINTER_RESOURCES, _no_rows),
        # documents fetched from the pointer vendors' APIs (their pointers are above)
        **{
            (module.NAME, resource): flattener
            for module in (oura, whoop, fitbit, withings, polar)
            for resource, flattener in module.RESOURCES.items()
            if flattener is not None
        },
    }
)
"""(vendor, resource) -> the batch flattener of that body kind."""


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
    """Flatten a batch: group by flattener, build and validate each group's frames once."""
    groups: dict[Flattener, list[FlattenInput]] = {}
    unknown: list[Issue] = []
    for item in items:
        flattener = FLATTENERS.get((item.vendor, item.resource))
        if flattener is None:
            unknown.append(_unknown_kind(item))
        else:
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
