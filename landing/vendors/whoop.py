"""WHOOP v2 webhooks: JSON pointers {user_id, id, type, trace_id}; trace_id is the dedupe key.

Signed: X-WHOOP-Signature = base64 HMAC-SHA256(client secret, X-WHOOP-Signature-Timestamp (ms)
+ raw body). No handshake.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from typing import TYPE_CHECKING

from landing.vendors.common import (
    Payload,
    Verification,
    clean_id,
    open_route,
    passed,
    rejected,
    same,
    secret_bytes,
    stale,
)
from landing.vendors.common import no_context as context
from landing.vendors.common import no_handshake as handshake

if TYPE_CHECKING:
    from landing.settings import Settings

NAME = "whoop"
FORMATS = frozenset({"json"})
HEADERS = frozenset({"x-whoop-signature-timestamp"})
SCHEME = "whoop-hmac-sha256"


def delivery_id(headers: Mapping[str, str], payload: Payload) -> str | None:
    """The body's `trace_id` (WHOOP's dedupe key), when it is a well-formed id."""
    return clean_id(payload.get("trace_id")) if isinstance(payload, dict) else None


def verify(headers: Mapping[str, str], body: bytes, settings: Settings) -> Verification:
    """Base64 HMAC-SHA256 over the millisecond timestamp + raw body, within the replay window."""
    secret = secret_bytes(settings.whoop_client_secret)
    if secret is None:
        return open_route("BIOBRIDGE_WHOOP_CLIENT_SECRET")
    signature = headers.get("x-whoop-signature")
    if signature is None:
        return rejected("missing X-WHOOP-Signature header", SCHEME)
    timestamp = headers.get("x-whoop-signature-timestamp")
    if (why := stale(timestamp, "X-WHOOP-Signature-Timestamp", 1000, settings)) is not None:
        return rejected(why, SCHEME)
    assert timestamp is not None
    digest = hmac.new(secret, timestamp.strip().encode("ascii") + body, hashlib.sha256).digest()
    if same(signature.strip(), base64.b64encode(digest)):
        return passed(SCHEME)
    return rejected("X-WHOOP-Signature does not match the body", SCHEME)


__all__ = ["FORMATS", "HEADERS", "NAME", "context", "delivery_id", "handshake", "verify"]
