"""WHOOP: `<kind>.updated` names a sleep, workout or (by its sleep's uuid) recovery.

A recovery is reached through its sleep: GET the sleep, then its cycle and the cycle's recovery
(cycles have no webhook of their own, so they arrive this way). `<kind>.deleted` marks the rows
of that record deleted.
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
from tasks.vendor_http import NotFound, VendorClient, whoop_record

NAME = "whoop"
KINDS = frozenset({"sleep", "workout", "recovery"})


def user_of(payload: Any) -> str | None:
    """The notification's `user_id`."""
    return text(payload.get("user_id")) if isinstance(payload, dict) else None


def plan(payload: Any, context: PlanContext) -> list[FetchRequest]:
    """One GET (or deletion) for the record the event names."""
    if not isinstance(payload, dict):
        raise NothingToFetch("a WHOOP notification is an object")
    kind, _, action = str(payload.get("type", "")).partition(".")
    record_id = text(payload.get("id"))
    if kind not in KINDS or record_id is None:
        raise NothingToFetch(f"WHOOP event type {payload.get('type')!r} is not fetched")
    ref = f"{kind}/{record_id}"
    user = user_of(payload)
    if action == "deleted":
        return [FetchRequest(NAME, kind, user, Action.DELETE, record_id, record_ref=ref)]
    return [FetchRequest(NAME, kind, user, target=record_id, record_ref=ref)]


def fetch(client: VendorClient, token: SecretStr, request: FetchRequest) -> list[FetchedDocument]:
    """The record; for a recovery, its sleep, cycle and recovery."""
    if request.resource != "recovery":
        body = whoop_record(client, token, request.resource, request.target)
        return [FetchedDocument(request.resource, body, request.record_ref)]
    sleep = whoop_record(client, token, "sleep", request.target)
    cycle_id = sleep.get("cycle_id") if isinstance(sleep, dict) else None
    if cycle_id is None:
        raise NotFound(NAME, f"/v2/activity/sleep/{request.target}", 200, "sleep has no cycle_id")
    cycle = whoop_record(client, token, "cycle", str(cycle_id))
    recovery = client.get_json(f"/v2/cycle/{cycle_id}/recovery", token=token)
    return [
        FetchedDocument("sleep", sleep, f"sleep/{request.target}"),
        FetchedDocument("cycle", cycle, f"cycle/{cycle_id}"),
        FetchedDocument("recovery", recovery, request.record_ref),
    ]
