"""Garmin Health API push: JSON data keyed by summary type; unsigned, carries garmin-client-id.

Garmin signs nothing: the check is that `garmin-client-id` is our consumer key
(BIOBRIDGE_GARMIN_CLIENT_ID). No handshake (URLs are set in Garmin's endpoint tool).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from landing.vendors.common import Verification, open_route, passed, rejected, same
from landing.vendors.common import no_context as context
from landing.vendors.common import no_delivery_id as delivery_id
from landing.vendors.common import no_handshake as handshake

if TYPE_CHECKING:
    from landing.settings import Settings

NAME = "garmin"
FORMATS = frozenset({"json"})
HEADERS = frozenset({"garmin-client-id"})
SCHEME = "garmin-client-id"


def verify(headers: Mapping[str, str], body: bytes, settings: Settings) -> Verification:
    """The garmin-client-id header equals BIOBRIDGE_GARMIN_CLIENT_ID."""
    expected = (settings.garmin_client_id or "").encode("utf-8")
    if not expected:
        return open_route("BIOBRIDGE_GARMIN_CLIENT_ID")
    given = headers.get("garmin-client-id")
    if given is None:
        return rejected("missing garmin-client-id header", SCHEME)
    if not same(given.strip(), expected):
        return rejected("garmin-client-id is not our client id", SCHEME)
    return passed(SCHEME)


__all__ = ["FORMATS", "HEADERS", "NAME", "context", "delivery_id", "handshake", "verify"]
