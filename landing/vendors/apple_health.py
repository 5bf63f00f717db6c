"""Apple Health via Health Auto Export: JSON data with no user id in the body.

The user id comes from the `X-User-Id` header the user configures in the app, or a `user_id`
query parameter. It is optional here: the ingest flow quarantines a body without one.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from landing.vendors.common import no_delivery_id as delivery_id
from landing.vendors.common import not_verified as verify

NAME = "apple_health"
FORMATS = frozenset({"json"})
HEADERS: frozenset[str] = frozenset()

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


__all__ = ["FORMATS", "HEADERS", "NAME", "context", "delivery_id", "verify"]
