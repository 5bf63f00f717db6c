"""Withings notifications: form-encoded pointers (userid, appli, startdate, enddate), unsigned."""

from __future__ import annotations

from landing.vendors.common import no_context as context
from landing.vendors.common import no_delivery_id as delivery_id
from landing.vendors.common import not_verified as verify

NAME = "withings"
FORMATS = frozenset({"json", "form"})
HEADERS: frozenset[str] = frozenset()

__all__ = ["FORMATS", "HEADERS", "NAME", "context", "delivery_id", "verify"]
