"""Fitbit: each notification item names (collectionType, date, ownerId): GET that day's
resources of the collection, with our `Accept-Language` (units) recorded beside the document.

`userRevokedAccess` marks the owner's connection revoked. Live Fitbit fetching ends with the
legacy Web API (turned off on 2 Nov 2026, OAUTH.md); this follows the spec against the fake.
"""

from __future__ import annotations

from typing import Any

from pydantic import SecretStr

from tasks.fetch.model import (
    Action,
    FetchedDocument,
    FetchRequest,
    NothingToFetch,
    PlanContext,
    text,
)
from tasks.vendor_http import VendorClient, fitbit_day

NAME = "fitbit"
COLLECTIONS: dict[str, tuple[str, ...]] = {
    "activities": ("activities-heart",),
    "sleep": ("hrv", "temp_skin"),
    "body": ("temp_core",),
}
"""collectionType -> the resources of that day we flatten (foods: none)."""
LIST_KEYS = {
    "activities-heart": "activities-heart",
    "hrv": "hrv",
    "temp_skin": "tempSkin",
    "temp_core": "tempCore",
}


def user_of(payload: Any) -> str | None:
    """The first item's `ownerId` (each request carries its own)."""
    if isinstance(payload, list) and payload and isinstance(payload[0], dict):
        return text(payload[0].get("ownerId"))
    return None


def plan(payload: Any, context: PlanContext) -> list[FetchRequest]:
    """One GET per (item, resource of its collection); a revocation per userRevokedAccess."""
    if not isinstance(payload, list):
        raise NothingToFetch("a Fitbit notification is a list")
    requests: list[FetchRequest] = []
    language = {"accept_language": context.fitbit_accept_language}
    for item in payload:
        if not isinstance(item, dict):
            continue
        owner, date = text(item.get("ownerId")), text(item.get("date"))
        collection = item.get("collectionType")
        if collection == "userRevokedAccess":
            requests.append(FetchRequest(NAME, "connection", owner, Action.REVOKE))
            continue
        for resource in COLLECTIONS.get(str(collection), ()):
            if date is not None:
                requests.append(
                    FetchRequest(
                        NAME,
                        resource,
                        owner,
                        target=date,
                        params={"accept_language": context.fitbit_accept_language},
                        context=language,
                    )
                )
    if not requests:
        raise NothingToFetch("no item names a collection we flatten")
    return requests


def fetch(client: VendorClient, token: SecretStr, request: FetchRequest) -> list[FetchedDocument]:
    """The day's document; none when the day is empty."""
    body = fitbit_day(
        client,
        token,
        request.resource,
        user_id="-",
        date=request.target,
        accept_language=request.params["accept_language"],
    )
    if isinstance(body, dict) and not body.get(LIST_KEYS[request.resource]):
        return []
    return [FetchedDocument(request.resource, body)]
