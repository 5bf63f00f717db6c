"""User tokens: who may push data as which user, checked by the receiver with a secret alone.

A token is `bb1.<user id, base64url>.<token id>.<HMAC-SHA256(BIOBRIDGE_TOKEN_SECRET,
"bb1|user|token id"), base64url>`, so checking one needs no database and no store. Where issued
tokens and revocations are kept: `landing.token_registry`. Why this design: docs/security.md.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re

VERSION = "bb1"
USER_ID_RE = re.compile(r"^[A-Za-z0-9._@:+-]{1,128}$")  # as landing.vendors.apple_health
_TOKEN_ID_RE = re.compile(r"^[0-9a-f]{16}$")


class TokenError(ValueError):
    """A token that does not authenticate anyone; the message is safe to send back."""


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(secret: bytes, user_id: str, token_id: str) -> bytes:
    return hmac.new(secret, f"{VERSION}|{user_id}|{token_id}".encode(), hashlib.sha256).digest()


def make_token(secret: bytes, user_id: str, token_id: str) -> str:
    """The token string for `user_id` (pure: same inputs, same token)."""
    if not USER_ID_RE.match(user_id):
        raise ValueError("user id must be 1-128 characters of A-Z a-z 0-9 . _ @ : + -")
    mac = b64(_mac(secret, user_id, token_id))
    return f"{VERSION}.{b64(user_id.encode())}.{token_id}.{mac}"


def check_token(secret: bytes, token: str) -> tuple[str, str]:
    """(user id, token id) of a well-formed token whose MAC is right; TokenError otherwise."""
    parts = token.split(".")
    if len(parts) != 4 or parts[0] != VERSION:
        raise TokenError("not a Biobridge user token (expected bb1.<user>.<id>.<mac>)")
    try:
        user_id = unb64(parts[1]).decode("utf-8")
        mac = unb64(parts[3])
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise TokenError("malformed user token") from None
    if not USER_ID_RE.match(user_id) or not _TOKEN_ID_RE.match(parts[2]):
        raise TokenError("malformed user token")
    if not hmac.compare_digest(mac, _mac(secret, user_id, parts[2])):
        raise TokenError("invalid user token (wrong signature, or BIOBRIDGE_TOKEN_SECRET changed)")
    return user_id, parts[2]
