"""Pandera contracts of each vendor payload, expressed over the flat frames a flattener builds.

Pandera validates frames, not nested JSON: each flattener first normalises a payload into a
`RecordFrame` (one row per record: who and when) and a `ValueFrame` (one row per vendor value),
then validates both with ``lazy=True`` and quarantines exactly the failing rows.

Each vendor module defines NAME (its route name) and its models; `REGISTRY` has one line per
vendor. A test pins it to `landing.keys.VENDORS` (schemas import nothing of ours, so it cannot
derive from it).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType, ModuleType

from schemas.vendors import apple_health, garmin, generic

REGISTRY: Mapping[str, ModuleType | None] = MappingProxyType(
    {
        "oura": None,
        "whoop": None,
        "garmin": garmin,
        "fitbit": None,
        "withings": None,
        "polar": None,
        "apple_health": apple_health,
        "generic": generic,
    }
)
"""Vendor -> the module of its payload models; None while a vendor only sends pointers (no
models yet). Its keys are the device types the canonical row accepts."""
