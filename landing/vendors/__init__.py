"""One module per vendor, all with the same names (see `common.Vendor`); REGISTRY maps routes.

Adding a vendor: copy a module, give it its NAME, and list it here and in `landing.keys.VENDORS`.
"""

from __future__ import annotations

from landing.vendors import apple_health, fitbit, garmin, generic, oura, polar, whoop, withings
from landing.vendors.common import Handshake, Payload, Vendor, Verification

_MODULES: tuple[Vendor, ...] = (oura, whoop, garmin, fitbit, withings, polar, apple_health, generic)

REGISTRY: dict[str, Vendor] = {m.NAME: m for m in _MODULES}

__all__ = ["REGISTRY", "Handshake", "Payload", "Vendor", "Verification"]
