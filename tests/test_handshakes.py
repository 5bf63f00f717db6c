"""Vendors' subscription handshakes over real HTTP (both stores): each gets the answer its
vendor expects, and none of them lands anything."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import httpx
import pytest
from pydantic import SecretStr
from starlette.types import ASGIApp

from landing.receiver import create_app
from landing.settings import Settings
from landing.store import ObjectStore
from tests.helpers import EXAMPLES, count_objects

PING = (EXAMPLES / "polar_ping.json").read_bytes()


@pytest.fixture
def configured(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "oura_verification_token": SecretStr("oura-verify-TEST-ONLY"),
            "fitbit_verification_code": SecretStr("fitbit-code-TEST-ONLY"),
            "polar_signature_secret": SecretStr("polar-secret-TEST-ONLY"),
        }
    )


@pytest.fixture
def client(
    configured: Settings, store: ObjectStore, serve: Callable[[ASGIApp], str]
) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=serve(create_app(configured, store)), timeout=10) as c:
        yield c


def test_oura_challenge(client: httpx.Client, store: ObjectStore) -> None:
    ok = client.get(
        "/webhooks/oura",
        params={"verification_token": "oura-verify-TEST-ONLY", "challenge": "c-123 &x"},
    )
    assert ok.status_code == 200 and ok.json() == {"challenge": "c-123 &x"}
    for params in (
        {"verification_token": "wrong", "challenge": "c"},
        {"challenge": "c"},
        {"verification_token": "", "challenge": "c"},
    ):
        r = client.get("/webhooks/oura", params=params)
        assert r.status_code == 401, params
        assert "oura-verify-TEST-ONLY" not in r.text
    # Not a handshake: the route still only takes POSTs.
    plain = client.get("/webhooks/oura")
    assert plain.status_code == 405 and plain.headers["allow"] == "POST"
    assert count_objects(store) == 0


def test_oura_challenge_without_a_configured_token_is_refused(
    settings: Settings, store: ObjectStore, serve: Callable[[ASGIApp], str]
) -> None:
    url = serve(create_app(settings, store))
    r = httpx.get(f"{url}/webhooks/oura", params={"verification_token": "x", "challenge": "c"})
    assert r.status_code == 401 and "BIOBRIDGE_OURA_VERIFICATION_TOKEN" in r.json()["detail"]


def test_fitbit_verify(client: httpx.Client, store: ObjectStore) -> None:
    ok = client.get("/webhooks/fitbit", params={"verify": "fitbit-code-TEST-ONLY"})
    assert ok.status_code == 204 and ok.content == b""
    for code in ("wrong", "", "fitbit-code-TEST-ONLY "):
        r = client.get("/webhooks/fitbit", params={"verify": code})
        assert r.status_code == 404, code
    assert count_objects(store) == 0


def test_withings_head(client: httpx.Client, store: ObjectStore) -> None:
    r = client.head("/webhooks/withings")
    assert r.status_code == 200 and r.content == b""
    assert client.head("/webhooks/oura").status_code == 405
    assert client.get("/webhooks/withings").status_code == 405
    assert count_objects(store) == 0


def test_polar_ping_is_200_signed_or_not_and_lands_nothing(
    client: httpx.Client, store: ObjectStore
) -> None:
    compact = json.dumps({"event": "PING"}).encode()
    for body, headers in (
        (PING, {"Content-Type": "application/json"}),
        (compact, {"Polar-Webhook-Event": "PING"}),
        (compact, {"Polar-Webhook-Signature": "not-the-signature"}),
    ):
        r = client.post("/webhooks/polar", content=body, headers=headers)
        assert r.status_code == 200, r.text
    # Anything else on the route still needs the signature.
    event = (EXAMPLES / "polar_exercise_event.json").read_bytes()
    assert client.post("/webhooks/polar", content=event).status_code == 401
    assert count_objects(store) == 0


def test_handshakes_work_on_the_open_quick_start_too(
    settings: Settings, store: ObjectStore, serve: Callable[[ASGIApp], str]
) -> None:
    with httpx.Client(base_url=serve(create_app(settings, store)), timeout=10) as c:
        assert c.head("/webhooks/withings").status_code == 200
        assert c.post("/webhooks/polar", content=PING).status_code == 200
        assert c.get("/webhooks/fitbit", params={"verify": "x"}).status_code == 404
        assert c.get("/webhooks/nowhere").status_code == 405
    assert count_objects(store) == 0
