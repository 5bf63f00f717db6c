"""The fetch modules' pure half: what each notification shape plans (no I/O)."""

from __future__ import annotations

import json

import pytest

from deployments.fake_vendor_api import EXAMPLES
from tasks.fetch import fitbit, oura, polar, whoop, withings
from tasks.fetch.model import Action, NothingToFetch, PlanContext
from tasks.fetch.registry import REGISTRY
from tasks.vendor_settings import POINTER_VENDORS

CONTEXT = PlanContext(api_url="https://www.polaraccesslink.com/v3")


def load(name: str) -> object:
    return json.loads((EXAMPLES / name).read_text())


def test_registry_lists_every_pointer_vendor_in_order() -> None:
    assert tuple(REGISTRY) == POINTER_VENDORS


def test_oura_document_and_the_days_heartrate() -> None:
    doc, heart = oura.plan(load("oura_webhook_event.json"), CONTEXT)
    assert (doc.resource, doc.target, doc.record_ref) == (
        "daily_readiness",
        "3f2a7c1e-9b4d-4e2a-8c61-5d0b7e9a2f14",
        "daily_readiness/3f2a7c1e-9b4d-4e2a-8c61-5d0b7e9a2f14",
    )
    assert heart.resource == "heartrate"
    assert dict(heart.params) == {
        "start_datetime": "2025-07-28T00:00:00+00:00",
        "end_datetime": "2025-07-29T00:00:00+00:00",
    }


def test_deletions_name_the_record() -> None:
    body = {**load("oura_webhook_event.json"), "event_type": "delete"}  # type: ignore[dict-item]
    (request,) = oura.plan(body, CONTEXT)
    assert request.action is Action.DELETE and request.record_ref.startswith("daily_readiness/")
    event = {**load("whoop_webhook_event.json"), "type": "workout.deleted"}  # type: ignore[dict-item]
    (request,) = whoop.plan(event, CONTEXT)
    assert (request.action, request.record_ref) == (
        Action.DELETE,
        "workout/7c0e4b2a-1f3d-4a5e-9b8c-2d6f0e1a3b57",
    )


def test_fitbit_collections_language_and_revocation() -> None:
    requests = fitbit.plan(load("fitbit_notification.json"), CONTEXT)
    assert sorted(r.resource for r in requests) == ["activities-heart", "hrv", "temp_skin"]
    assert {r.params["accept_language"] for r in requests} == {"en_GB"}
    revoked = [{"collectionType": "userRevokedAccess", "ownerId": "X", "date": "2025-07-28"}]
    (request,) = fitbit.plan(revoked, CONTEXT)
    assert (request.action, request.vendor_user_id) == (Action.REVOKE, "X")


def test_withings_catches_up_from_the_window_start() -> None:
    form = {"userid": "38164427", "appli": "1", "startdate": "1753711925", "enddate": "1753711926"}
    (request,) = withings.plan(form, CONTEXT)
    assert dict(request.params) == {"lastupdate": "1753711925"}
    assert withings.user_of(form) == "38164427"


def test_polar_exercise_by_url_sleep_by_date_ping_is_nothing() -> None:
    (request,) = polar.plan(load("polar_exercise_event.json"), CONTEXT)
    assert (request.resource, request.target) == ("exercise", "/exercises/Xk3p9QvN")
    sleep = {"event": "SLEEP", "user_id": 1, "date": "2025-07-28", "url": "https://x.invalid/"}
    assert polar.plan(sleep, CONTEXT)[0].target == "/users/sleep/2025-07-28"
    with pytest.raises(NothingToFetch, match="PING"):
        polar.plan(load("polar_ping.json"), CONTEXT)
