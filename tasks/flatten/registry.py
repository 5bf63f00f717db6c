"""The vendor registry of the flatten stage: one line per vendor, in `landing.keys.VENDORS`
order (a test pins it). Everything else here is derived from the vendor modules' names.

Adding a vendor: write `tasks/flatten/<vendor>.py` with NAME, EXPECTED, RESOURCES and `detect`
(see `model.VendorFlatten` and notes/flatten-shape.md) and add one line below.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from tasks.flatten import apple_health, fitbit, garmin, generic, oura, polar, whoop, withings
from tasks.flatten.model import POINTER, Flattener, UnrecognisedBody, VendorFlatten

_MODULES: tuple[VendorFlatten, ...] = (
    oura,
    whoop,
    garmin,
    fitbit,
    withings,
    polar,
    apple_health,
    generic,
)

REGISTRY: Mapping[str, VendorFlatten] = MappingProxyType({m.NAME: m for m in _MODULES})
"""Route vendor -> its flatten module."""

FLATTENERS: Mapping[tuple[str, str], Flattener | None] = MappingProxyType(
    {
        (vendor, resource): flattener
        for vendor, module in REGISTRY.items()
        for resource, flattener in module.RESOURCES.items()
    }
)
"""(vendor, resource) -> the batch flattener of that body kind, or POINTER (no rows)."""


def is_pointer(vendor: str, resource: str) -> bool:
    """True when bodies of this kind only point at data held by the vendor: no rows, deferred."""
    return (vendor, resource) in FLATTENERS and FLATTENERS[vendor, resource] is POINTER


def resource_of(
    vendor: str,
    payload: Any,
    headers: Mapping[str, str],
    context: Mapping[str, str] | None = None,
) -> str:
    """The resource of a body landed on ``/webhooks/<vendor>`` or fetched from its API.

    A fetched document's metadata context names its resource (the fetch stage knows what it
    asked for); that wins over detection, which cannot tell every document kind apart.
    Raises UnrecognisedBody (a ValueError) naming what was expected and what was found.
    """
    module = REGISTRY.get(vendor)
    if module is None:
        raise UnrecognisedBody(
            f"route vendor: expected one of {', '.join(REGISTRY)}, found {vendor!r}"
        )
    recorded = (context or {}).get("resource")
    if recorded is not None and (context or {}).get("fetched") and recorded in module.RESOURCES:
        return recorded
    lower = {name.lower(): value for name, value in headers.items()}
    resource = module.detect(payload, lower)
    if resource is None:
        raise UnrecognisedBody(
            f"/webhooks/{vendor} body: expected {module.EXPECTED}, found {_shape(payload)}"
        )
    return resource


def _shape(payload: Any) -> str:
    if type(payload) is dict:
        keys = ", ".join(sorted(map(str, payload))[:12])
        return f"an object with keys [{keys}]"
    if type(payload) is list:
        return f"a list of {len(payload)} items"
    return f"a {type(payload).__name__}"
