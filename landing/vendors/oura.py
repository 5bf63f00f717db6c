"""Oura API v2 webhooks: JSON pointers, signed with x-oura-signature over timestamp + body.

The old internal system also posts the generic shape (vendors README section 11) here: a
request without `x-oura-signature` whose body is that shape (or that carries the generic bearer
token) is checked as the generic shape; anything else must be signed once the secret is set.
Oura's subscription handshake is `GET ?verification_token=T&challenge=C`.
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
    bearer,
    generic_shape,
    open_route,
    passed,
    rejected,
    same,
    secret_bytes,
    stale,
    verify_generic,
)
from landing.vendors.common import no_context as context
from landing.vendors.common import no_delivery_id as delivery_id

if TYPE_CHECKING:
    from landing.settings import Settings

NAME = "oura"
FORMATS = frozenset({"json"})
HEADERS = frozenset({"x-oura-timestamp"})
SCHEME = "oura-hmac-sha256"
COMPACT_SCHEME = "oura-hmac-sha256-compact-json"
MAX_CHALLENGE_CHARS = 512


def verify(headers: Mapping[str, str], body: bytes, settings: Settings) -> Verification:
    """Upper-case hex HMAC-SHA256 (case-insensitive) over x-oura-timestamp + raw body."""
    signature = headers.get("x-oura-signature")
    secret = secret_bytes(settings.oura_client_secret)
    if signature is None and (secret is not None or settings.generic_token is not None):
        generic_token = secret_bytes(settings.generic_token)
        given = bearer(headers)
        if (generic_token is not None and given is not None) or generic_shape(body) is not None:
            return verify_generic(headers, settings)
    if secret is None:
        return open_route("BIOBRIDGE_OURA_CLIENT_SECRET")
    if signature is None:
        return rejected("missing x-oura-signature header", SCHEME)
    timestamp = headers.get("x-oura-timestamp")
    if (why := stale(timestamp, "x-oura-timestamp", 1, settings)) is not None:
        return rejected(why, SCHEME)
    assert timestamp is not None  # stale() said it is there
    prefix = timestamp.strip().encode("ascii")
    given_sig = signature.strip().upper()
    if same(given_sig, _hex(secret, prefix + body)):
        return passed(SCHEME)
    if settings.oura_accept_compact_json_signature:
        try:
            compact = orjson.dumps(orjson.loads(body))
        except orjson.JSONDecodeError:
            compact = None
        if compact is not None and same(given_sig, _hex(secret, prefix + compact)):
            return passed(COMPACT_SCHEME)
    return rejected("x-oura-signature does not match the body", SCHEME)


def _hex(secret: bytes, message: bytes) -> bytes:
    return hmac.new(secret, message, hashlib.sha256).hexdigest().upper().encode("ascii")


def handshake(
    method: str,
    query: Mapping[str, str],
    headers: Mapping[str, str],
    body: bytes,
    settings: Settings,
) -> Handshake | None:
    """GET ?verification_token=T&challenge=C: 200 {"challenge": C} when T is ours, else 401."""
    if method != "GET" or ("verification_token" not in query and "challenge" not in query):
        return None
    expected = secret_bytes(settings.oura_verification_token)
    token = query.get("verification_token")
    challenge = query.get("challenge")
    if expected is None:
        return _refused("BIOBRIDGE_OURA_VERIFICATION_TOKEN is not set")
    if token is None or not same(token, expected):
        return _refused("verification_token does not match")
    if not challenge or len(challenge) > MAX_CHALLENGE_CHARS:
        return Handshake(400, _error("missing or oversized challenge"))
    return Handshake(200, {"challenge": challenge})


def _refused(reason: str) -> Handshake:
    return Handshake(401, _error(reason))


def _error(reason: str) -> dict[str, str]:
    return {"status": "rejected", "error": "handshake_refused", "detail": reason}


__all__ = ["FORMATS", "HEADERS", "NAME", "context", "delivery_id", "handshake", "verify"]
