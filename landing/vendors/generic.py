"""The generic internal shape (vendors README section 11) on its own route: JSON data.

Authenticated by `Authorization: Bearer <BIOBRIDGE_GENERIC_TOKEN>` once that is set.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from landing.vendors.common import Verification, verify_generic
from landing.vendors.common import no_context as context
from landing.vendors.common import no_delivery_id as delivery_id
from landing.vendors.common import no_handshake as handshake

if TYPE_CHECKING:
    from landing.settings import Settings

NAME = "generic"
FORMATS = frozenset({"json"})
HEADERS: frozenset[str] = frozenset()


def verify(headers: Mapping[str, str], body: bytes, settings: Settings) -> Verification:
    """The shared bearer token of the old internal system, when configured."""
    return verify_generic(headers, settings)


__all__ = ["FORMATS", "HEADERS", "NAME", "context", "delivery_id", "handshake", "verify"]
