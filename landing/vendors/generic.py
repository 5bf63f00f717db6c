"""The generic internal shape (vendors README section 11) on its own route: JSON data, unsigned."""

from __future__ import annotations

from landing.vendors.common import no_context as context
from landing.vendors.common import no_delivery_id as delivery_id
from landing.vendors.common import not_verified as verify

NAME = "generic"
FORMATS = frozenset({"json"})
HEADERS: frozenset[str] = frozenset()

__all__ = ["FORMATS", "HEADERS", "NAME", "context", "delivery_id", "verify"]
