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

from schemas.vendors import apple_health, fitbit, garmin, generic, oura, polar, whoop, withings

REGISTRY: Mapping[str, ModuleType | None] = MappingProxyType(
    {
        "oura": oura,
        "whoop": whoop,
        "garmin": garmin,
        "fitbit": fitbit,
        "withings": withings,
        "polar": polar,
        "apple_health": apple_health,
        "generic": generic,
    }
)
"""Vendor -> the module of its payload models (None for a vendor without models). Its keys are
the device types the canonical row accepts."""
