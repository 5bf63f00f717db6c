"""Fitbit Subscriptions API: a JSON array of pointers, signed with X-Fitbit-Signature.

Signature: base64 HMAC-SHA1 over the raw body, key = client secret + "&". Fitbit expects 404
for a delivery whose signature does not match (and for a wrong `?verify=` code).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from typing import TYPE_CHECKING

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

NAME = "fitbit"
FORMATS = frozenset({"json"})
HEADERS: frozenset[str] = frozenset()
SCHEME = "fitbit-hmac-sha1"


def verify(headers: Mapping[str, str], body: bytes, settings: Settings) -> Verification:
    """Base64 HMAC-SHA1 (key `secret&`) over the raw body; any failure is a 404, as Fitbit wants."""
    secret = secret_bytes(settings.fitbit_client_secret)
    if secret is None:
        return open_route("BIOBRIDGE_FITBIT_CLIENT_SECRET")
    signature = headers.get("x-fitbit-signature")
    if signature is None:
        return rejected("missing X-Fitbit-Signature header", SCHEME, 404)
    digest = hmac.new(secret + b"&", body, hashlib.sha1).digest()
    if same(signature.strip(), base64.b64encode(digest)):
        return passed(SCHEME)
    return rejected("X-Fitbit-Signature does not match the body", SCHEME, 404)


def handshake(
    method: str,
    query: Mapping[str, str],
    headers: Mapping[str, str],
    body: bytes,
    settings: Settings,
) -> Handshake | None:
    """GET ?verify=CODE: 204 when CODE is BIOBRIDGE_FITBIT_VERIFICATION_CODE, else 404."""
    if method != "GET" or "verify" not in query:
        return None
    expected = secret_bytes(settings.fitbit_verification_code)
    if expected is not None and same(query["verify"], expected):
        return Handshake(204)
    detail = (
        "BIOBRIDGE_FITBIT_VERIFICATION_CODE is not set"
        if expected is None
        else "wrong verification code"
    )
    return Handshake(404, {"status": "rejected", "error": "handshake_refused", "detail": detail})


__all__ = ["FORMATS", "HEADERS", "NAME", "context", "delivery_id", "handshake", "verify"]
