"""Pandera contracts of each vendor payload, expressed over the flat frames a flattener builds.

Pandera validates frames, not nested JSON: each flattener first normalises a payload into a
`RecordFrame` (one row per record: who and when) and a `ValueFrame` (one row per vendor value),
then validates both with ``lazy=True`` and quarantines exactly the failing rows.

Each vendor module defines NAME (its route name) and its models; `REGISTRY` lists one per line.
A test pins it to `landing.keys.VENDORS` (schemas import nothing of ours, so it cannot derive).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType, ModuleType

from schemas.vendors import apple_health, garmin, generic

_MODULES: tuple[ModuleType, ...] = (
    garmin,
    apple_health,
    generic,
)

REGISTRY: Mapping[str, ModuleType] = MappingProxyType({m.NAME: m for m in _MODULES})
"""Vendor -> the module of its payload models (vendors that only send pointers have none yet)."""
