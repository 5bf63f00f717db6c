"""What every vendor module exposes (the `Vendor` protocol) and the defaults they share."""

from __future__ import annotations

import hmac
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import orjson

if TYPE_CHECKING:
    from pydantic import SecretStr

    from landing.settings import Settings

Payload = dict[str, Any] | list[Any]
"""A parsed body: a JSON object or array, or a form as {field: last value}."""

_ID_RE = re.compile(r"^[A-Za-z0-9._:@+-]{1,128}$")


OPEN_ROUTE = "unsigned-open-route"
"""The scheme recorded when the route has no credential configured (an open route)."""


@dataclass(frozen=True)
class Verification:
    """The outcome of the authentication of one delivery, with a reason safe to log and send.

    `accepted` False: answer `status` with `reason` and land nothing. `verified` True: a
    credential was checked and passed; `scheme` names which (stored as `ObjectMeta.signature`).
    A user token also says whose it is (`user_id`) and its id (checked against revocations).
    """

    verified: bool
    reason: str
    scheme: str = OPEN_ROUTE
    accepted: bool = True
    status: int = 401
    user_id: str | None = None
    token_id: str | None = None


@dataclass(frozen=True)
class Handshake:
    """The answer to a vendor's subscription handshake: nothing lands for it."""

    status: int
    content: dict[str, Any] | None = None  # a JSON body, or none


class Vendor(Protocol):
    """The names each module in `landing.vendors` defines (modules satisfy this protocol)."""

    NAME: str
    FORMATS: frozenset[str]  # body formats accepted, a subset of landing.keys.EXTENSIONS
    HEADERS: frozenset[str]  # lower-case vendor headers worth keeping in the metadata

    def delivery_id(self, headers: Mapping[str, str], payload: Payload) -> str | None:
        """The vendor's own id for this delivery (its dedupe key), or None when it sends none."""
        ...

    def context(self, headers: Mapping[str, str], query: Mapping[str, str]) -> dict[str, str]:
        """What the body does not say (e.g. the user id); ValueError(reason) rejects the request."""
        ...

    def verify(self, headers: Mapping[str, str], body: bytes, settings: Settings) -> Verification:
        """Authenticate the delivery from its headers and raw body (before parsing)."""
        ...

    def handshake(
        self,
        method: str,
        query: Mapping[str, str],
        headers: Mapping[str, str],
        body: bytes,
        settings: Settings,
    ) -> Handshake | None:
        """The answer when the request is the vendor's handshake (GET, HEAD or a POST ping)."""
        ...


def clean_id(value: object) -> str | None:
    """`value` if it is a short id of safe characters (stored, logged and echoed), else None."""
    if isinstance(value, str | int) and not isinstance(value, bool):
        text = str(value)
        if _ID_RE.match(text):
            return text
    return None


def no_delivery_id(headers: Mapping[str, str], payload: Payload) -> str | None:
    """For vendors that send no delivery id: the receiver makes one up."""
    return None


def no_context(headers: Mapping[str, str], query: Mapping[str, str]) -> dict[str, str]:
    """For vendors whose bodies say everything the loader needs."""
    return {}


def no_handshake(
    method: str,
    query: Mapping[str, str],
    headers: Mapping[str, str],
    body: bytes,
    settings: Settings,
) -> Handshake | None:
    """For vendors without a handshake: every request is a delivery (or a wrong method)."""
    return None


def secret_bytes(value: SecretStr | None) -> bytes | None:
    """The UTF-8 bytes of a configured secret; None when unset or empty (the route is open)."""
    if value is None:
        return None
    raw = value.get_secret_value()
    return raw.encode("utf-8") if raw else None


def same(given: str, expected: bytes) -> bool:
    """Constant-time comparison of a received credential with the configured one."""
    return hmac.compare_digest(given.encode("utf-8", "surrogateescape"), expected)


def open_route(setting: str) -> Verification:
    """Accepted unauthenticated: the route's credential (`setting`) is not configured."""
    return Verification(verified=False, reason=f"{setting} is not set: open route")


def rejected(reason: str, scheme: str, status: int = 401) -> Verification:
    """Refused: answer `status` with `reason`; nothing lands."""
    return Verification(verified=False, reason=reason, scheme=scheme, accepted=False, status=status)


def passed(scheme: str) -> Verification:
    """The credential of `scheme` checked out."""
    return Verification(verified=True, reason=f"{scheme} verified", scheme=scheme)


def stale(value: str | None, name: str, per_second: int, settings: Settings) -> str | None:
    """Why the timestamp header `name` is unusable (missing, malformed, outside the replay
    window in either direction), or None when it is fresh. `per_second`: 1 (s) or 1000 (ms)."""
    if value is None:
        return f"missing {name} header"
    text = value.strip()
    if not text.isascii() or not text.isdigit() or len(text) > 16:
        return f"{name} must be an integer epoch timestamp"
    age = time.time() - int(text) / per_second
    limit = settings.signature_max_age_s
    if abs(age) > limit:
        when = "old" if age > 0 else "in the future"
        return (
            f"stale signature: {name} is {abs(age):.0f} s {when}; the replay window is {limit} s "
            "(BIOBRIDGE_SIGNATURE_MAX_AGE_S)"
        )
    return None


def bearer(headers: Mapping[str, str]) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, else None."""
    value = headers.get("authorization")
    if value is None:
        return None
    scheme, _, token = value.strip().partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def generic_shape(body: bytes, *, hae_aware: bool = False) -> dict[str, Any] | None:
    """The body as a dict when the pipeline will read it as the old internal system's generic
    shape (a `data` object with a `user_id` or `timestamp`; with `hae_aware`, not a Health Auto
    Export body), else None. Mirrors tasks.flatten.resources, which decides what is loaded."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if type(doc) is not dict or type(doc.get("data")) is not dict:
        return None
    if "user_id" not in doc and "timestamp" not in doc:
        return None
    if hae_aware and ("metrics" in doc["data"] or "workouts" in doc["data"]):
        return None
    return doc


def verify_generic(headers: Mapping[str, str], settings: Settings) -> Verification:
    """The generic shape: `Authorization: Bearer <BIOBRIDGE_GENERIC_TOKEN>` once that is set."""
    token = secret_bytes(settings.generic_token)
    if token is None:
        return open_route("BIOBRIDGE_GENERIC_TOKEN")
    given = bearer(headers)
    if given is None:
        return rejected(
            "missing Authorization: Bearer token (the generic shape needs BIOBRIDGE_GENERIC_TOKEN)",
            "generic-token",
        )
    if not same(given, token):
        return rejected("wrong bearer token for the generic shape", "generic-token")
    return passed("generic-token")


def not_verified(headers: Mapping[str, str], body: bytes, settings: Settings) -> Verification:
    """For routes that have no credential to check (Withings): accept, record unverified."""
    return Verification(verified=False, reason="this route has no signature scheme: open route")
