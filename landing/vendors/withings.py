"""Withings notifications: form-encoded pointers (userid, appli, startdate, enddate), unsigned.

Withings signs nothing (it publishes its source IP ranges in DNS TXT records instead), so this
route is open: on a non-loopback bind it needs the explicit opt-out BIOBRIDGE_OPEN_ROUTES=withings
(restrict it by IP at the proxy or firewall). Its handshake is a HEAD, answered 200.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from landing.vendors.common import Handshake
from landing.vendors.common import no_context as context
from landing.vendors.common import no_delivery_id as delivery_id
from landing.vendors.common import not_verified as verify

if TYPE_CHECKING:
    from landing.settings import Settings

NAME = "withings"
FORMATS = frozenset({"json", "form"})
HEADERS: frozenset[str] = frozenset()


def handshake(
    method: str,
    query: Mapping[str, str],
    headers: Mapping[str, str],
    body: bytes,
    settings: Settings,
) -> Handshake | None:
    """HEAD (Withings checks the URL answers before it subscribes it): 200."""
    return Handshake(200) if method == "HEAD" else None


__all__ = ["FORMATS", "HEADERS", "NAME", "context", "delivery_id", "handshake", "verify"]
