"""What the fetch stage passes around: requests planned from a notification, documents fetched.

Each vendor module (`tasks/fetch/<vendor>.py`) has the same names: `NAME`, `user_of(payload)`
(the vendor user a notification is about), `plan(payload, context) -> list[FetchRequest]` (pure)
and `fetch(client, token, request) -> list[FetchedDocument]` (the HTTP part).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from pydantic import SecretStr

from tasks.vendor_http import VendorClient


class Action(StrEnum):
    """What a planned request does."""

    GET = "get"  # fetch documents from the vendor API and land them
    DELETE = "delete"  # the vendor deleted `record_ref`: mark its rows deleted
    REVOKE = "revoke"  # the user withdrew access at the vendor: mark the connection revoked


@dataclass(frozen=True)
class FetchRequest:
    """One thing to do for a notification, all a vendor module's `fetch` needs besides a token."""

    vendor: str
    resource: str
    vendor_user_id: str | None
    action: Action = Action.GET
    target: str = ""  # an id, a date or a path, per vendor
    params: Mapping[str, str] = field(default_factory=dict)
    record_ref: str | None = None  # "<resource>/<id>": what a later deletion event names
    context: Mapping[str, str] = field(default_factory=dict)  # carried to the document's meta


@dataclass(frozen=True)
class FetchedDocument:
    """One vendor answer (a record, a page, a day) to land as raw JSON."""

    resource: str
    body: Any
    record_ref: str | None = None


@dataclass(frozen=True)
class PlanContext:
    """What planning may depend on besides the notification (settings, never tokens)."""

    api_url: str
    fitbit_accept_language: str = "en_GB"


class NothingToFetch(ValueError):
    """The notification points at nothing we fetch (a PING, an event type without a flattener)."""


class VendorFetch(Protocol):
    """The names every `tasks/fetch/<vendor>.py` module has."""

    NAME: str

    def user_of(self, payload: Any) -> str | None: ...

    def plan(self, payload: Any, context: PlanContext) -> list[FetchRequest]: ...

    def fetch(
        self, client: VendorClient, token: SecretStr, request: FetchRequest
    ) -> list[FetchedDocument]: ...


def text(value: Any) -> str | None:
    """A notification field as text (ids arrive as numbers or strings), None when absent."""
    if value is None or isinstance(value, dict | list):
        return None
    return str(value)
