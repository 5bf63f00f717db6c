"""WHOOP v2 webhooks: JSON pointers {user_id, id, type, trace_id}; trace_id is the dedupe key."""

from __future__ import annotations

from collections.abc import Mapping

from landing.vendors.common import Payload, clean_id
from landing.vendors.common import no_context as context
from landing.vendors.common import not_verified as verify

NAME = "whoop"
FORMATS = frozenset({"json"})
HEADERS = frozenset({"x-whoop-signature-timestamp"})


def delivery_id(headers: Mapping[str, str], payload: Payload) -> str | None:
    """The body's `trace_id` (WHOOP's dedupe key), when it is a well-formed id."""
    return clean_id(payload.get("trace_id")) if isinstance(payload, dict) else None


__all__ = ["FORMATS", "HEADERS", "NAME", "context", "delivery_id", "verify"]
