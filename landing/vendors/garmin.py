"""Garmin Health API push: JSON data keyed by summary type; unsigned, carries garmin-client-id."""

from __future__ import annotations

from landing.vendors.common import no_context as context
from landing.vendors.common import no_delivery_id as delivery_id
from landing.vendors.common import not_verified as verify

NAME = "garmin"
FORMATS = frozenset({"json"})
HEADERS = frozenset({"garmin-client-id"})

__all__ = ["FORMATS", "HEADERS", "NAME", "context", "delivery_id", "verify"]
