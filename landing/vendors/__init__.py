"""One module per vendor, all with the same names (see `common.Vendor`); REGISTRY maps routes.

This registry is the one list of vendors: `landing.keys.VENDORS` is derived from it, and the
registries of `schemas.vendors` and `tasks.flatten` are pinned to it by tests. Adding a vendor:
copy a module, give it its NAME, and add one line below.
"""

from __future__ import annotations

from landing.vendors import apple_health, fitbit, garmin, generic, oura, polar, whoop, withings
from landing.vendors.common import Handshake, Payload, Vendor, Verification

_MODULES: tuple[Vendor, ...] = (
    oura,
    whoop,
    garmin,
    fitbit,
    withings,
    polar,
    apple_health,
    generic,
)

REGISTRY: dict[str, Vendor] = {m.NAME: m for m in _MODULES}

__all__ = ["REGISTRY", "Handshake", "Payload", "Vendor", "Verification"]
