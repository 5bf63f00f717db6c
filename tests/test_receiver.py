"""The receiver through real HTTP (uvicorn + httpx), over both store backends."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from landing.keys import VENDORS, parse_key
from landing.store import ObjectStore
from tests.helpers import EXAMPLES, count_objects, free_port, post_concurrently

LOGGER = "biobridge.receiver"
GENERIC = (EXAMPLES / "generic_daily_readiness.json").read_bytes()
EXAMPLE_BY_VENDOR = {
    "oura": ("oura_webhook_event.json", "application/json"),
    "whoop": ("whoop_webhook_event.json", "application/json; charset=utf-8"),
    "garmin": ("garmin_dailies.json", "application/json"),
    "fitbit": ("fitbit_notification.json", "application/json"),
    "withings": ("withings_measure_notify.txt", "application/x-www-form-urlencoded"),
    "polar": ("polar_exercise_event.json", "application/json"),
    "apple_health": ("apple_health_auto_export.json", "application/json"),
    "generic": ("generic_daily_readiness.json", "application/json"),
}
SECRET_HEADERS = {
    "Authorization": "Bearer sekrit-bearer",
    "Cookie": "session=sekrit-cookie",
    "X-Api-Key": "sekrit-api-key",
    "X-Oura-Signature": "SEKRIT-SIGNATURE",
    "X-WHOOP-Signature": "sekrit-signature-b64",
    "X-Auth-Token": "sekrit-token",
}


def test_accepted_body_lands_byte_identical_with_metadata(
    client: httpx.Client, store: ObjectStore
) -> None:
    assert sorted(EXAMPLE_BY_VENDOR) == sorted(VENDORS)
    for vendor, (file_name, content_type) in EXAMPLE_BY_VENDOR.items():
        body = (EXAMPLES / file_name).read_bytes()
        headers = {"Content-Type": content_type, "User-Agent": "vendor-bot/2", **SECRET_HEADERS}

        r = client.post(f"/webhooks/{vendor}", content=body, headers=headers)

        assert r.status_code == 202, (vendor, r.text)
        answer = r.json()
        assert answer["status"] == "accepted"
        assert answer["device_type"] == vendor
        stored, meta = store.get(answer["object_key"])
        assert stored == body, vendor
        assert meta.sha256 == hashlib.sha256(body).hexdigest() and meta.size == len(body)
        assert meta.vendor == vendor and meta.delivery_id == answer["delivery_id"]
        assert meta.received_at == datetime.fromisoformat(answer["received_at"])
        assert parse_key(answer["object_key"]).vendor == vendor
        assert meta.content_type == content_type.split(";")[0]
        assert meta.signature_verified is False
        assert meta.headers["user-agent"] == "vendor-bot/2"
        assert meta.headers["content-length"] == str(len(body))
        assert "sekrit" not in (meta.to_json().decode() + r.text).lower()
    assert count_objects(store) == len(VENDORS)


def test_whoop_delivery_id_is_its_trace_id(client: httpx.Client, store: ObjectStore) -> None:
    body = (EXAMPLES / "whoop_webhook_event.json").read_bytes()
    r = client.post(
        "/webhooks/whoop", content=body, headers={"X-WHOOP-Signature-Timestamp": "1753730895000"}
    )
    assert r.status_code == 202
    assert r.json()["delivery_id"] == json.loads(body)["trace_id"]
    _, meta = store.get(r.json()["object_key"])
    assert meta.delivery_id_source == "vendor"
    assert meta.headers["x-whoop-signature-timestamp"] == "1753730895000"


def test_vendors_without_a_delivery_id_get_ours(client: httpx.Client, store: ObjectStore) -> None:
    first = client.post("/webhooks/oura", content=GENERIC).json()
    second = client.post("/webhooks/oura", content=GENERIC).json()
    assert first["delivery_id"] != second["delivery_id"]
    assert store.get(first["object_key"])[1].delivery_id_source == "receiver"


def test_apple_health_user_id_lands_in_context(client: httpx.Client, store: ObjectStore) -> None:
    by_header = client.post("/webhooks/apple_health", content=GENERIC, headers={"X-User-Id": "u-1"})
    by_query = client.post("/webhooks/apple_health?user_id=me@example.org", content=GENERIC)
    without = client.post("/webhooks/apple_health", content=GENERIC)

    assert [r.status_code for r in (by_header, by_query, without)] == [202, 202, 202]
    assert store.get(by_header.json()["object_key"])[1].context == {"user_id": "u-1"}
    assert store.get(by_query.json()["object_key"])[1].context == {"user_id": "me@example.org"}
    assert store.get(without.json()["object_key"])[1].context == {}


def test_odd_header_values_are_kept_bounded(client: httpx.Client, store: ObjectStore) -> None:
    headers = [
        ("User-Agent", b"Ger\xe4t/1.0 " + b"x" * 5000),
        ("X-Request-Id", b"\xff" * 300),
        ("X-Oura-Timestamp", b"1753730895"),
    ]
    r = client.post("/webhooks/oura", content=GENERIC, headers=headers)

    assert r.status_code == 202
    _, meta = store.get(r.json()["object_key"])
    assert meta.headers["user-agent"].startswith("Gerät/1.0 xxx")
    assert len(meta.headers["user-agent"]) == 200
    assert meta.headers["x-oura-timestamp"] == "1753730895"
    assert len(meta.to_json()) < 2000


def test_generic_shape_scenario_lands_60_distinct_objects(url: str, store: ObjectStore) -> None:
    posts = [("/webhooks/oura", GENERIC)] * 30 + [("/webhooks/apple_health", GENERIC)] * 30

    answers = post_concurrently(url, posts)

    assert [r.status_code for r in answers] == [202] * 60
    keys = [r.json()["object_key"] for r in answers]
    assert len(set(keys)) == 60
    assert sorted(store.list_keys("raw/")) == sorted(keys)
    assert sum(1 for _ in store.list_keys("raw/oura/")) == 30
    assert sum(1 for _ in store.list_keys("raw/apple_health/")) == 30
    for key in keys:
        body, meta = store.get(key)
        assert body == GENERIC
        assert meta.sha256 == hashlib.sha256(GENERIC).hexdigest()
        assert meta.vendor == parse_key(key).vendor


def test_200_concurrent_posts_all_land_once(url: str, store: ObjectStore) -> None:
    bodies = [json.dumps({"n": i, "data": {"steps": i}}).encode() for i in range(200)]

    answers = post_concurrently(url, [("/webhooks/generic", b) for b in bodies])

    assert [r.status_code for r in answers] == [202] * 200
    keys = [r.json()["object_key"] for r in answers]
    assert len(set(keys)) == 200
    assert sorted(store.list_keys("raw/")) == sorted(keys)
    for key, body in zip(keys, bodies, strict=True):
        assert store.get(key)[0] == body


def test_one_log_line_per_request_without_bodies_or_secrets(
    client: httpx.Client, caplog: pytest.LogCaptureFixture
) -> None:
    def logged() -> list[dict[str, Any]]:
        return [json.loads(r.getMessage()) for r in caplog.records if r.name == LOGGER]

    with caplog.at_level(logging.INFO, logger=LOGGER):
        ok = client.post("/webhooks/oura", content=GENERIC, headers=SECRET_HEADERS)
        bad = client.post("/webhooks/oura", content=b'{"athlete_elite_001": NaN}')
        deadline = time.monotonic() + 5  # a line is written just after its answer is sent
        while len(logged()) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)

    lines = logged()
    assert [(line["status"], line["vendor"]) for line in lines] == [(202, "oura"), (400, "oura")]
    assert lines[0]["object_key"] == ok.json()["object_key"]
    assert lines[0]["delivery_id"] == ok.json()["delivery_id"]
    assert lines[0]["bytes"] == len(GENERIC) and lines[0]["duration_ms"] >= 0
    assert lines[1]["error"] == "invalid_json" and bad.status_code == 400
    assert "athlete_elite_001" not in caplog.text and "sekrit" not in caplog.text.lower()


def test_health_readiness_and_openapi(client: httpx.Client, store: ObjectStore) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json() == {"status": "ready"}
    schema = client.get("/openapi.json").json()
    assert set(schema["paths"]) == {"/webhooks/{vendor}", "/healthz", "/readyz", "/metrics"}
    assert count_objects(store) == 0


def test_server_entry_point_serves_from_the_environment(tmp_path: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        "BIOBRIDGE_LANDING_URL": (tmp_path / "landing").as_uri(),
        "BIOBRIDGE_PORT": str(port),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "landing.server"], env=env, stderr=subprocess.PIPE, text=True
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                assert httpx.get(f"{url}/readyz").status_code == 200
                break
            except httpx.TransportError:
                assert proc.poll() is None and time.monotonic() < deadline, "did not start"
                time.sleep(0.05)
        r = httpx.post(f"{url}/webhooks/oura", content=GENERIC)
        assert r.status_code == 202
    finally:
        proc.terminate()
        _, stderr = proc.communicate(timeout=10)

    key = r.json()["object_key"]
    assert (tmp_path / "landing" / key).read_bytes() == GENERIC
    logged = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    assert [line["object_key"] for line in logged if line["path"] == "/webhooks/oura"] == [key]
