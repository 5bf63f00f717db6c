"""Signature checks through the live receiver (both stores): the vendors' vectors verify, and
tampered, wrongly keyed, stale, future and unsigned deliveries are refused with nothing landed."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from starlette.types import ASGIApp

from landing.receiver import create_app
from landing.settings import Settings
from landing.store import ObjectMeta, ObjectStore
from tests.helpers import EXAMPLES, count_objects

VECTORS = {
    v: json.loads((EXAMPLES / f"{v}_signature_vector.json").read_text())
    for v in ("oura", "whoop", "fitbit", "polar")
}
SCHEMES = {
    "oura": "oura-hmac-sha256",
    "whoop": "whoop-hmac-sha256",
    "fitbit": "fitbit-hmac-sha1",
    "polar": "polar-hmac-sha256",
}
SIGNATURE_HEADER = {
    "oura": "x-oura-signature",
    "whoop": "X-WHOOP-Signature",
    "fitbit": "X-Fitbit-Signature",
    "polar": "Polar-Webhook-Signature",
}
TIMESTAMP_HEADER = {"oura": "x-oura-timestamp", "whoop": "X-WHOOP-Signature-Timestamp"}
REJECTED = {"oura": 401, "whoop": 401, "fitbit": 404, "polar": 401}  # Fitbit wants 404
GENERIC = (EXAMPLES / "generic_daily_readiness.json").read_bytes()
ALL_DAY = 10**10  # a replay window that admits the vectors' old timestamps


def with_secrets(settings: Settings, *, max_age: int = 300, **extra: Any) -> Settings:
    """`settings` with every vendor's test-only secret from the vectors."""
    return settings.model_copy(
        update={
            "oura_client_secret": SecretStr(VECTORS["oura"]["secret"]),
            "whoop_client_secret": SecretStr(VECTORS["whoop"]["secret"]),
            "fitbit_client_secret": SecretStr(VECTORS["fitbit"]["secret"]),
            "polar_signature_secret": SecretStr(VECTORS["polar"]["secret"]),
            "garmin_client_id": "garmin-client-id-TEST-ONLY",
            "generic_token": SecretStr("generic-token-TEST-ONLY"),
            "signature_max_age_s": max_age,
            **extra,
        }
    )


def sign(vendor: str, secret: str, body: bytes, timestamp: str | None = None) -> dict[str, str]:
    """Headers a vendor would send for `body` (the vectors' own computations)."""
    key = secret.encode()
    if vendor == "oura":
        assert timestamp is not None
        sig = hmac.new(key, timestamp.encode() + body, hashlib.sha256).hexdigest().upper()
        return {"x-oura-timestamp": timestamp, "x-oura-signature": sig}
    if vendor == "whoop":
        assert timestamp is not None
        digest = hmac.new(key, timestamp.encode() + body, hashlib.sha256).digest()
        return {
            "X-WHOOP-Signature-Timestamp": timestamp,
            "X-WHOOP-Signature": base64.b64encode(digest).decode(),
        }
    if vendor == "fitbit":
        digest = hmac.new(key + b"&", body, hashlib.sha1).digest()
        return {"X-Fitbit-Signature": base64.b64encode(digest).decode()}
    return {"Polar-Webhook-Signature": hmac.new(key, body, hashlib.sha256).hexdigest()}


def now_stamp(vendor: str, offset_s: float = 0) -> str:
    t = time.time() + offset_s
    return str(int(t * 1000) if vendor == "whoop" else int(t))


@pytest.fixture
def make_client(
    store: ObjectStore, serve: Callable[[ASGIApp], str]
) -> Iterator[Callable[[Settings], httpx.Client]]:
    clients: list[httpx.Client] = []

    def make(settings: Settings) -> httpx.Client:
        c = httpx.Client(base_url=serve(create_app(settings, store)), timeout=10)
        clients.append(c)
        return c

    yield make
    for c in clients:
        c.close()


def vector_request(vendor: str) -> tuple[bytes, dict[str, str]]:
    v = VECTORS[vendor]
    body = base64.b64decode(v["body_base64"])
    assert body == v["body"].encode() and hashlib.sha256(body).hexdigest() == v["body_sha256_hex"]
    return body, dict(v["headers"])


def meta_of(store: ObjectStore, r: httpx.Response) -> ObjectMeta:
    return store.get(r.json()["object_key"])[1]


def test_every_vector_verifies_with_a_wide_replay_window(
    settings: Settings, store: ObjectStore, make_client: Callable[[Settings], httpx.Client]
) -> None:
    client = make_client(with_secrets(settings, max_age=ALL_DAY))
    for vendor in VECTORS:
        body, headers = vector_request(vendor)
        r = client.post(f"/webhooks/{vendor}", content=body, headers=headers)
        assert r.status_code == 202, (vendor, r.text)
        stored, meta = store.get(r.json()["object_key"])
        assert stored == body
        assert meta.signature_verified is True and meta.signature == SCHEMES[vendor]
        assert VECTORS[vendor]["secret"] not in meta.to_json().decode()
    assert count_objects(store) == len(VECTORS)


def test_vectors_are_stale_with_the_default_window(
    settings: Settings, store: ObjectStore, make_client: Callable[[Settings], httpx.Client]
) -> None:
    client = make_client(with_secrets(settings))
    for vendor in TIMESTAMP_HEADER:
        body, headers = vector_request(vendor)
        r = client.post(f"/webhooks/{vendor}", content=body, headers=headers)
        assert r.status_code == 401, (vendor, r.text)
        assert r.json()["error"] == "unauthenticated"
        assert (
            "stale" in r.json()["detail"] and "BIOBRIDGE_SIGNATURE_MAX_AGE_S" in r.json()["detail"]
        )
    assert count_objects(store) == 0


@pytest.mark.parametrize("vendor", sorted(VECTORS))
def test_fresh_signatures_pass_and_every_defect_is_refused(
    vendor: str,
    settings: Settings,
    store: ObjectStore,
    make_client: Callable[[Settings], httpx.Client],
) -> None:
    client = make_client(with_secrets(settings))
    body, _ = vector_request(vendor)
    secret = VECTORS[vendor]["secret"]
    stamp = now_stamp(vendor) if vendor in TIMESTAMP_HEADER else None
    good = {"Content-Type": "application/json", **sign(vendor, secret, body, stamp)}
    url = f"/webhooks/{vendor}"

    bad: dict[str, tuple[bytes, dict[str, str]]] = {
        "tampered body": (body[:20] + bytes([body[20] ^ 1]) + body[21:], good),
        "one byte appended": (body + b" ", good),
        "wrong secret": (body, {**good, **sign(vendor, "wrong-TEST-ONLY", body, stamp)}),
        "missing signature": (
            body,
            {k: v for k, v in good.items() if k != SIGNATURE_HEADER[vendor]},
        ),
        "garbage signature": (body, {**good, SIGNATURE_HEADER[vendor]: "not-a-signature"}),
    }
    if vendor in TIMESTAMP_HEADER:
        unit = 1000 if vendor == "whoop" else 1
        old = now_stamp(vendor, -301 - 5)
        future = now_stamp(vendor, +301 + 5)
        bad["stale timestamp"] = (
            body,
            {"Content-Type": "application/json", **sign(vendor, secret, body, old)},
        )
        bad["future timestamp"] = (
            body,
            {"Content-Type": "application/json", **sign(vendor, secret, body, future)},
        )
        bad["missing timestamp"] = (
            body,
            {k: v for k, v in good.items() if k != TIMESTAMP_HEADER[vendor]},
        )
        bad["timestamp swapped after signing"] = (
            body,
            {**good, TIMESTAMP_HEADER[vendor]: str(int(stamp or "0") + unit)},
        )
    for case, (b, h) in bad.items():
        r = client.post(url, content=b, headers=h)
        assert r.status_code == REJECTED[vendor], (case, r.text)
        assert r.json()["status"] == "rejected" and r.json()["detail"], case
        assert secret not in r.text
    assert count_objects(store) == 0

    r = client.post(url, content=body, headers=good)
    assert r.status_code == 202, r.text
    assert meta_of(store, r).signature == SCHEMES[vendor]
    assert count_objects(store) == 1


def test_hex_signatures_are_case_insensitive(
    settings: Settings, store: ObjectStore, make_client: Callable[[Settings], httpx.Client]
) -> None:
    client = make_client(with_secrets(settings))
    for vendor in ("oura", "polar"):
        body, _ = vector_request(vendor)
        stamp = now_stamp(vendor) if vendor == "oura" else None
        headers = sign(vendor, VECTORS[vendor]["secret"], body, stamp)
        name = SIGNATURE_HEADER[vendor]
        for value in (headers[name].lower(), headers[name].upper()):
            r = client.post(f"/webhooks/{vendor}", content=body, headers={**headers, name: value})
            assert r.status_code == 202, (vendor, r.text)
    assert count_objects(store) == 4


def test_oura_compact_json_form_only_when_enabled(
    settings: Settings, store: ObjectStore, make_client: Callable[[Settings], httpx.Client]
) -> None:
    pretty = json.dumps(json.loads(VECTORS["oura"]["body"]), indent=2).encode()
    compact = json.dumps(json.loads(pretty), separators=(",", ":")).encode()
    stamp = now_stamp("oura")
    headers = sign("oura", VECTORS["oura"]["secret"], compact, stamp)  # signs the re-serialised

    strict = make_client(with_secrets(settings))
    assert strict.post("/webhooks/oura", content=pretty, headers=headers).status_code == 401
    assert count_objects(store) == 0

    lenient = make_client(with_secrets(settings, oura_accept_compact_json_signature=True))
    r = lenient.post("/webhooks/oura", content=pretty, headers=headers)
    assert r.status_code == 202, r.text
    stored, meta = store.get(r.json()["object_key"])
    assert stored == pretty  # the raw bytes land, whichever form verified
    assert meta.signature == "oura-hmac-sha256-compact-json" and meta.signature_verified
    raw = lenient.post(
        "/webhooks/oura", content=compact, headers=headers
    )  # the raw form is tried first
    assert meta_of(store, raw).signature == "oura-hmac-sha256"


def test_garmin_client_id(
    settings: Settings, store: ObjectStore, make_client: Callable[[Settings], httpx.Client]
) -> None:
    client = make_client(with_secrets(settings))
    body = (EXAMPLES / "garmin_dailies.json").read_bytes()
    for headers in ({}, {"garmin-client-id": "someone-else"}, {"garmin-client-id": ""}):
        r = client.post("/webhooks/garmin", content=body, headers=headers)
        assert r.status_code == 401 and "garmin-client-id" in r.json()["detail"], headers
    assert count_objects(store) == 0
    r = client.post(
        "/webhooks/garmin", content=body, headers={"garmin-client-id": "garmin-client-id-TEST-ONLY"}
    )
    assert r.status_code == 202
    meta = meta_of(store, r)
    assert meta.signature == "garmin-client-id" and meta.signature_verified
    assert meta.headers["garmin-client-id"] == "garmin-client-id-TEST-ONLY"


def test_generic_shape_needs_the_generic_token_once_set(
    settings: Settings, store: ObjectStore, make_client: Callable[[Settings], httpx.Client]
) -> None:
    client = make_client(with_secrets(settings))
    for route in ("oura", "generic", "apple_health"):
        for headers in (
            {},
            {"Authorization": "Bearer wrong-TEST-ONLY"},
            {"Authorization": "Basic generic-token-TEST-ONLY"},
        ):
            r = client.post(f"/webhooks/{route}", content=GENERIC, headers=headers)
            assert r.status_code == 401, (route, headers, r.text)
        assert count_objects(store) == 0
    # A generic body with a (bad) Oura signature is checked as Oura: no way around the secret.
    r = client.post(
        "/webhooks/oura",
        content=GENERIC,
        headers={"x-oura-signature": "00", "x-oura-timestamp": now_stamp("oura")},
    )
    assert r.status_code == 401 and "x-oura-signature" in r.json()["detail"]
    # An Oura pointer without a signature is refused even with the generic token.
    pointer, _ = vector_request("oura")
    assert client.post("/webhooks/oura", content=pointer).status_code == 401
    assert count_objects(store) == 0

    for route in ("oura", "generic", "apple_health"):
        r = client.post(
            f"/webhooks/{route}",
            content=GENERIC,
            headers={"Authorization": "Bearer generic-token-TEST-ONLY"},
        )
        assert r.status_code == 202, (route, r.text)
        meta = meta_of(store, r)
        assert meta.signature == "generic-token" and meta.signature_verified
        assert "generic-token-TEST-ONLY" not in meta.to_json().decode()


def test_without_secrets_routes_stay_open_and_say_so(
    settings: Settings, store: ObjectStore, make_client: Callable[[Settings], httpx.Client]
) -> None:
    client = make_client(settings)
    for vendor in VECTORS:
        body, headers = vector_request(vendor)
        r = client.post(f"/webhooks/{vendor}", content=body, headers=headers)
        assert r.status_code == 202
        meta = meta_of(store, r)
        assert meta.signature == "unsigned-open-route" and meta.signature_verified is False


def test_metadata_without_the_signature_field_still_loads() -> None:
    old = (
        b'{"content_type":"application/json","context":{},"delivery_id":"d","delivery_id_source":'
        b'"receiver","headers":{},"received_at":"2026-01-01T00:00:00+00:00","sha256":"00",'
        b'"signature_verified":false,"size":2,"vendor":"oura"}'
    )
    meta = ObjectMeta.from_json(old)
    assert meta.signature == "" and meta.signature_verified is False
    newer = json.loads(meta.to_json())
    assert newer["signature"] == ""
    newer["field_from_the_future"] = 1
    assert ObjectMeta.from_json(json.dumps(newer)) == meta
