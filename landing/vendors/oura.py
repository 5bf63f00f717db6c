"""Oura API v2 webhooks: JSON pointers, signed with x-oura-signature over timestamp + body.

The old internal system also posts the generic shape (vendors README section 11) here.
"""

from __future__ import annotations

from landing.vendors.common import no_context as context
from landing.vendors.common import no_delivery_id as delivery_id
from landing.vendors.common import not_verified as verify

NAME = "oura"
FORMATS = frozenset({"json"})
HEADERS = frozenset({"x-oura-timestamp"})

__all__ = ["FORMATS", "HEADERS", "NAME", "context", "delivery_id", "verify"]
