"""Fitbit Subscriptions API: a JSON array of pointers, signed with X-Fitbit-Signature."""

from __future__ import annotations

from landing.vendors.common import no_context as context
from landing.vendors.common import no_delivery_id as delivery_id
from landing.vendors.common import not_verified as verify

NAME = "fitbit"
FORMATS = frozenset({"json"})
HEADERS: frozenset[str] = frozenset()

__all__ = ["FORMATS", "HEADERS", "NAME", "context", "delivery_id", "verify"]
