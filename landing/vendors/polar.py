"""Polar AccessLink: JSON pointers (and an unsigned PING); Polar-Webhook-Event names the event.

Signed: Polar-Webhook-Signature = hex HMAC-SHA256(signature_secret_key, raw body). The PING
Polar sends when the webhook is created (before we hold the secret) is answered 200, unsigned,
and lands nothing.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import TYPE_CHECKING

import orjson

from landing.vendors.common import (
    Handshake,
    Verification,
    open_route,
    passed,
    rejected,
    same,
    secret_bytes,
)
from landing.vendors.common import no_context as context
from landing.vendors.common import no_delivery_id as delivery_id

if TYPE_CHECKING:
    from landing.settings import Settings

NAME = "polar"
FORMATS = frozenset({"json"})
HEADERS = frozenset({"polar-webhook-event"})
SCHEME = "polar-hmac-sha256"
MAX_PING_BYTES = 4096


def verify(headers: Mapping[str, str], body: bytes, settings: Settings) -> Verification:
    """Hex HMAC-SHA256 over the raw body (hex compared case-insensitively)."""
    secret = secret_bytes(settings.polar_signature_secret)
    if secret is None:
        return open_route("BIOBRIDGE_POLAR_SIGNATURE_SECRET")
    signature = headers.get("polar-webhook-signature")
    if signature is None:
        return rejected("missing Polar-Webhook-Signature header", SCHEME)
    expected = hmac.new(secret, body, hashlib.sha256).hexdigest().encode("ascii")
    if same(signature.strip().lower(), expected):
        return passed(SCHEME)
    return rejected("Polar-Webhook-Signature does not match the body", SCHEME)


def handshake(
    method: str,
    query: Mapping[str, str],
    headers: Mapping[str, str],
    body: bytes,
    settings: Settings,
) -> Handshake | None:
    """POST {"event": "PING"}: 200, signed or not; nothing lands (a PING carries no data)."""
    if method != "POST" or len(body) > MAX_PING_BYTES:
        return None
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if isinstance(doc, dict) and doc.get("event") == "PING":
        return Handshake(200, {"status": "ok", "event": "PING"})
    return None


__all__ = ["FORMATS", "HEADERS", "NAME", "context", "delivery_id", "handshake", "verify"]
