"""Polar: an EXERCISE notification's `url` (only its path, on AccessLink), a SLEEP one's `date`.

PING and event types we do not flatten resolve to nothing, with the reason.
"""

from __future__ import annotations

from typing import Any

from pydantic import SecretStr

from tasks.fetch.model import FetchedDocument, FetchRequest, NothingToFetch, PlanContext, text
from tasks.vendor_http import VendorClient, polar_event_path

NAME = "polar"
EVENTS = {"EXERCISE": "exercise", "SLEEP": "sleep"}


def user_of(payload: Any) -> str | None:
    """The notification's `user_id`."""
    return text(payload.get("user_id")) if isinstance(payload, dict) else None


def plan(payload: Any, context: PlanContext) -> list[FetchRequest]:
    """One GET of the path the event names."""
    if not isinstance(payload, dict):
        raise NothingToFetch("a Polar notification is an object")
    event = str(payload.get("event"))
    if event not in EVENTS:
        raise NothingToFetch(f"Polar {event} events carry nothing we flatten")
    path = polar_event_path(context.api_url, payload)
    ref = f"{EVENTS[event]}/{text(payload.get('entity_id')) or text(payload.get('date'))}"
    return [FetchRequest(NAME, EVENTS[event], user_of(payload), target=path, record_ref=ref)]


def fetch(client: VendorClient, token: SecretStr, request: FetchRequest) -> list[FetchedDocument]:
    """The exercise or night."""
    body = client.get_json(request.target, token=token)
    return [FetchedDocument(request.resource, body, request.record_ref)]
