"""Oura: a notification names (event_type, data_type, object_id); GET that document.

`heartrate` has no webhook: every create/update notification also pulls the user's heartrate
for the notification's UTC day (every page of it). A `delete` event marks the rows of the
document it names deleted.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
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
from tasks.vendor_http import VendorClient, oura_document, oura_pages

NAME = "oura"
FETCHED = frozenset(
    {"daily_readiness", "daily_sleep", "daily_activity", "sleep", "daily_spo2", "heartrate"}
)


def user_of(payload: Any) -> str | None:
    """The notification's `user_id`."""
    return text(payload.get("user_id")) if isinstance(payload, dict) else None


def plan(payload: Any, context: PlanContext) -> list[FetchRequest]:
    """The document the notification names (and the day's heartrate), or a deletion."""
    if not isinstance(payload, dict):
        raise NothingToFetch("an Oura notification is an object")
    event, data_type = payload.get("event_type"), text(payload.get("data_type"))
    object_id, user = text(payload.get("object_id")), user_of(payload)
    if data_type is None or object_id is None:
        raise NothingToFetch("the notification names no data_type/object_id")
    ref = f"{data_type}/{object_id}"
    if event == "delete":
        return [FetchRequest(NAME, data_type, user, Action.DELETE, object_id, record_ref=ref)]
    if data_type not in FETCHED:
        raise NothingToFetch(f"Oura {data_type} documents are not flattened (no metrics)")
    requests = [FetchRequest(NAME, data_type, user, target=object_id, record_ref=ref)]
    day = _day(payload.get("event_time"))
    if day is not None:
        start = datetime.combine(day, datetime.min.time(), UTC)
        window = {
            "start_datetime": start.isoformat(),
            "end_datetime": (start + timedelta(days=1)).isoformat(),
        }
        requests.append(FetchRequest(NAME, "heartrate", user, params=window))
    return requests


def _day(value: Any) -> Any:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC).date()
    except ValueError:
        return None


def fetch(client: VendorClient, token: SecretStr, request: FetchRequest) -> list[FetchedDocument]:
    """The named document, or every page of a heartrate window."""
    if request.resource == "heartrate":
        return [
            FetchedDocument("heartrate", page)
            for page in oura_pages(client, token, "heartrate", request.params)
            if isinstance(page, dict) and page.get("data")
        ]
    body = oura_document(client, token, request.resource, request.target)
    return [FetchedDocument(request.resource, body, request.record_ref)]
