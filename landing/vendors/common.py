"""What every vendor module exposes (the `Vendor` protocol) and the defaults they share."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from landing.settings import Settings

Payload = dict[str, Any] | list[Any]
"""A parsed body: a JSON object or array, or a form as {field: last value}."""

_ID_RE = re.compile(r"^[A-Za-z0-9._:@+-]{1,128}$")


@dataclass(frozen=True)
class Verification:
    """The outcome of a signature check, with a reason safe to log."""

    verified: bool
    reason: str


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
        """Check the vendor's signature over the raw body."""
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


def not_verified(headers: Mapping[str, str], body: bytes, settings: Settings) -> Verification:
    """Placeholder until signature checks arrive (a later issue): accept, record unverified."""
    return Verification(verified=False, reason="signature checks are not implemented yet")
