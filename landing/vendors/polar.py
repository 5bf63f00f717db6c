"""Polar AccessLink: JSON pointers (and an unsigned PING); Polar-Webhook-Event names the event."""

from __future__ import annotations

from landing.vendors.common import no_context as context
from landing.vendors.common import no_delivery_id as delivery_id
from landing.vendors.common import not_verified as verify

NAME = "polar"
FORMATS = frozenset({"json"})
HEADERS = frozenset({"polar-webhook-event"})

__all__ = ["FORMATS", "HEADERS", "NAME", "context", "delivery_id", "verify"]
