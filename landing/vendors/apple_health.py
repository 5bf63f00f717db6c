"""Apple Health via Health Auto Export: JSON data with no user id in the body.

The user is the one a user token (`Authorization: Bearer bb1...`, from `biobridge tokens issue`)
was issued for; an `X-User-Id` header or `user_id` query parameter that names someone else is
refused by the receiver. Until BIOBRIDGE_TOKEN_SECRET is set the route is open and the user id
comes from the header or query (optional here: the ingest flow quarantines a body without one).

The old internal system also posts the generic shape here: that is checked as the generic shape
(BIOBRIDGE_GENERIC_TOKEN), since it carries many users' data.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING

from landing.tokens import VERSION, TokenError, check_token
from landing.vendors.common import (
    Verification,
    bearer,
    generic_shape,
    open_route,
    rejected,
    secret_bytes,
    verify_generic,
)
from landing.vendors.common import no_delivery_id as delivery_id
from landing.vendors.common import no_handshake as handshake

if TYPE_CHECKING:
    from landing.settings import Settings

NAME = "apple_health"
FORMATS = frozenset({"json"})
HEADERS: frozenset[str] = frozenset()
SCHEME = "user-token"

USER_ID_RE = re.compile(r"^[A-Za-z0-9._@:+-]{1,128}$")


def context(headers: Mapping[str, str], query: Mapping[str, str]) -> dict[str, str]:
    """{"user_id": ...} from X-User-Id or ?user_id=; ValueError when malformed or conflicting."""
    from_header = headers.get("x-user-id")
    from_query = query.get("user_id")
    if from_header is not None and from_query is not None and from_header != from_query:
        raise ValueError("X-User-Id header and user_id query parameter disagree: send one")
    user_id = from_header if from_header is not None else from_query
    if user_id is None:
        return {}
    if not USER_ID_RE.match(user_id):
        raise ValueError(
            "user id (X-User-Id header or user_id query parameter) must be 1-128 characters "
            "of A-Z a-z 0-9 . _ @ : + -"
        )
    return {"user_id": user_id}


def verify(headers: Mapping[str, str], body: bytes, settings: Settings) -> Verification:
    """A user token (its user becomes the delivery's user), or the generic shape's token."""
    secret = secret_bytes(settings.token_secret)
    generic_token = secret_bytes(settings.generic_token)
    if secret is None and generic_token is None:
        return open_route("BIOBRIDGE_TOKEN_SECRET")
    given = bearer(headers)
    is_user_token = given is not None and given.startswith(VERSION + ".")
    generic = generic_shape(body, hae_aware=True)
    if not is_user_token and (
        generic is not None or (given is not None and generic_token is not None)
    ):
        return verify_generic(headers, settings)
    if secret is None:
        return open_route("BIOBRIDGE_TOKEN_SECRET")
    if given is None:
        return rejected("missing Authorization: Bearer <user token>", SCHEME)
    try:
        user_id, token_id = check_token(secret, given)
    except TokenError as exc:
        return rejected(str(exc), SCHEME)
    if generic is not None and str(generic.get("user_id")) != user_id:
        # The generic shape names its own user: a user token may only post its own user's.
        return rejected("the body's user_id is not the token's user", SCHEME, status=403)
    return Verification(
        verified=True,
        reason=f"{SCHEME} verified",
        scheme=SCHEME,
        user_id=user_id,
        token_id=token_id,
    )


__all__ = ["FORMATS", "HEADERS", "NAME", "context", "delivery_id", "handshake", "verify"]
