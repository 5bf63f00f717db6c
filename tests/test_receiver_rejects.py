"""Bad input gets a specific 4xx and lands nothing; a failing store gets 503, never a 2xx."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import hypothesis
import pytest
from hypothesis import strategies as st
from starlette.types import ASGIApp

from landing.receiver import create_app
from landing.settings import Settings
from landing.store import ObjectStore, open_store
from tests.helpers import EXAMPLES, count_objects, free_port

GENERIC = (EXAMPLES / "generic_daily_readiness.json").read_bytes()
LIMIT = 64 * 1024  # settings.max_body_bytes in conftest

BAD_REQUESTS = {
    # name: (path, headers, body, status, error)
    "unknown vendor": ("/webhooks/nope", {}, GENERIC, 404, "unknown_vendor"),
    "odd vendor": ("/webhooks/%3Cscript%3Ealert(1)", {}, GENERIC, 404, "unknown_vendor"),
    "empty body": ("/webhooks/oura", {}, b"", 400, "empty_body"),
    "too large": ("/webhooks/garmin", {}, b"[" + b"1," * LIMIT + b"1]", 413, "body_too_large"),
    "text/plain": ("/webhooks/oura", {"Content-Type": "text/plain"}, GENERIC, 415, None),
    "form to oura": (
        "/webhooks/oura",
        {"Content-Type": "application/x-www-form-urlencoded"},
        b"a=1",
        415,
        "unsupported_media_type",
    ),
    "gzip": ("/webhooks/oura", {"Content-Encoding": "gzip"}, GENERIC, 415, None),
    "latin-1": (
        "/webhooks/oura",
        {"Content-Type": "application/json; charset=latin-1"},
        GENERIC,
        415,
        "unsupported_charset",
    ),
    "syntax": ("/webhooks/oura", {}, b'{"a": 1,\n "b": }', 400, "invalid_json"),
    "NaN": ("/webhooks/oura", {}, b'{"a": NaN}', 400, "invalid_json"),
    "Infinity": ("/webhooks/oura", {}, b'{"a": -Infinity}', 400, "invalid_json"),
    "not UTF-8": ("/webhooks/oura", {}, b'{"a": "\xff\xfe"}', 400, "invalid_json"),
    "too deep": ("/webhooks/oura", {}, b"[" * 5000 + b"]" * 5000, 400, "invalid_json"),
    "trailing": ("/webhooks/oura", {}, b"{} {}", 400, "invalid_json"),
    "scalar": ("/webhooks/oura", {}, b"42", 400, "invalid_json_shape"),
    "string": ("/webhooks/oura", {}, b'"hello"', 400, "invalid_json_shape"),
    "null": ("/webhooks/oura", {}, b"null", 400, "invalid_json_shape"),
    "form not ASCII": (
        "/webhooks/withings",
        {"Content-Type": "application/x-www-form-urlencoded"},
        b"userid=\xe9",
        400,
        "invalid_form",
    ),
    "bad user id": ("/webhooks/apple_health?user_id=a%20b", {}, GENERIC, 400, "invalid_context"),
    "long user id": ("/webhooks/apple_health", {"X-User-Id": "u" * 129}, GENERIC, 400, None),
    "two user ids": (
        "/webhooks/apple_health?user_id=a",
        {"X-User-Id": "b"},
        GENERIC,
        400,
        "invalid_context",
    ),
}


def test_bad_requests_get_their_status_and_land_nothing(
    client: httpx.Client, store: ObjectStore
) -> None:
    wrong: list[str] = []
    for case, (path, headers, body, status, error) in BAD_REQUESTS.items():
        r = client.post(path, content=body, headers=headers)
        answer = r.json()
        if (
            r.status_code != status
            or answer["status"] != "rejected"
            or not answer["detail"]
            or (error and answer["error"] != error)
            or "<script>" in r.text
        ):
            wrong.append(f"{case}: {r.status_code} {r.text}")

    assert wrong == []
    assert count_objects(store) == 0


def test_messages_say_what_to_fix(client: httpx.Client) -> None:
    syntax = client.post("/webhooks/oura", content=b'{"a": 1,\n "b": }').json()["detail"]
    assert "line 2 column 7 (char 15)" in syntax
    assert "UTF-8" in client.post("/webhooks/oura", content=b'{"a": "\xff"}').json()["detail"]
    unknown = client.post("/webhooks/nope", content=GENERIC).json()
    assert "oura" in unknown["known_vendors"] and "apple_health" in unknown["known_vendors"]
    media = client.post("/webhooks/oura", content=GENERIC, headers={"Content-Type": "text/csv"})
    assert media.json()["accepted"] == ["application/json", "application/*+json"]


def test_accepted_content_type_variants(client: httpx.Client, store: ObjectStore) -> None:
    for content_type in [None, "application/vnd.api+json; charset=UTF-8", "Application/JSON"]:
        headers = {"Content-Type": content_type} if content_type else {}
        r = client.post("/webhooks/generic", content=GENERIC, headers=headers)
        assert r.status_code == 202, (content_type, r.text)
    assert count_objects(store) == 3


def test_chunked_body_over_the_limit_is_refused_while_streaming(
    client: httpx.Client, store: ObjectStore
) -> None:
    def chunks() -> Iterator[bytes]:
        yield b"["
        for _ in range(LIMIT // 1000 + 2):
            yield b"1," * 500
        yield b"1]"

    r = client.post("/webhooks/garmin", content=chunks())

    assert r.status_code == 413
    assert r.json()["max_bytes"] == LIMIT
    assert count_objects(store) == 0


def test_slow_drip_body_gets_408_without_holding_the_server(
    tmp_path: Path, settings: Settings, serve: Callable[[ASGIApp], str]
) -> None:
    store = open_store((tmp_path / "landing").as_uri(), settings)
    url = serve(create_app(settings.model_copy(update={"body_timeout_s": 0.5}), store))
    port = int(url.rsplit(":", 1)[1])
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(
            b"POST /webhooks/oura HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100\r\n\r\n{"
        )
        # Meanwhile the server keeps answering others.
        assert httpx.post(f"{url}/webhooks/oura", content=GENERIC).status_code == 202
        answer = b""
        while b"\r\n\r\n" not in answer:
            try:
                sock.sendall(b" ")
            except OSError:
                pass
            time.sleep(0.05)
            sock.setblocking(False)
            try:
                answer += sock.recv(4096)
            except BlockingIOError:
                pass
            sock.setblocking(True)
            assert time.monotonic() - started < 5, "no answer to a slow body"

    assert answer.startswith(b"HTTP/1.1 408 ")
    assert b'"error":"body_timeout"' in answer
    assert count_objects(store) == 1


@pytest.fixture(params=["local", "s3"])
def broken_store(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> ObjectStore:
    """A store whose writes really fail: a folder below a regular file, or S3 on a closed port."""
    if request.param == "local":
        (tmp_path / "a-file").write_bytes(b"not a folder")
        return open_store((tmp_path / "a-file" / "landing").as_uri(), settings)
    request.getfixturevalue("aws_env")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", f"http://127.0.0.1:{free_port()}")
    return open_store("s3://biobridge-unreachable/landing", settings)


def test_store_failure_is_503_with_retry_after_and_not_ready(
    broken_store: ObjectStore, settings: Settings, serve: Callable[[ASGIApp], str]
) -> None:
    url = serve(create_app(settings, broken_store))
    with httpx.Client(base_url=url, timeout=10) as client:
        r = client.post("/webhooks/oura", content=GENERIC)
        ready = client.get("/readyz")
        health = client.get("/healthz")

    assert r.status_code == 503
    assert r.headers["Retry-After"] == "7"
    assert r.json()["error"] == "store_unavailable"
    for leak in ["Traceback", "127.0.0.1", "a-file", "Errno", "testing"]:
        assert leak not in r.text
    assert ready.status_code == 503
    assert ready.json()["status"] == "unavailable"
    assert "StoreUnavailable" in ready.json()["reason"]
    assert health.status_code == 200


def test_wrong_method_and_unknown_path_are_json(client: httpx.Client) -> None:
    wrong = client.get("/webhooks/oura")
    assert wrong.status_code == 405 and wrong.headers["allow"] == "POST"
    missing = client.post("/nowhere", content=GENERIC)
    assert missing.status_code == 404 and missing.json()["status"] == "rejected"


def test_body_limit_is_exact_with_and_without_content_length(
    client: httpx.Client, store: ObjectStore
) -> None:
    at_limit = b'["' + b"a" * (LIMIT - 4) + b'"]'
    over = b'["' + b"a" * (LIMIT - 3) + b'"]'

    def chunked(body: bytes) -> Iterator[bytes]:
        yield from (body[i : i + 4096] for i in range(0, len(body), 4096))

    assert len(at_limit) == LIMIT
    assert client.post("/webhooks/generic", content=at_limit).status_code == 202
    assert client.post("/webhooks/generic", content=chunked(at_limit)).status_code == 202
    assert client.post("/webhooks/generic", content=over).status_code == 413
    assert client.post("/webhooks/generic", content=chunked(over)).status_code == 413
    assert count_objects(store) == 2


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)


def test_any_input_gets_202_and_lands_or_a_4xx_and_lands_nothing(
    tmp_path: Path, settings: Settings, serve: Callable[[ASGIApp], str]
) -> None:
    store = open_store((tmp_path / "landing").as_uri(), settings)
    client = httpx.Client(base_url=serve(create_app(settings, store)), timeout=10)

    @hypothesis.settings(max_examples=150, deadline=None)
    @hypothesis.given(
        vendor=st.sampled_from(["oura", "withings", "apple_health", "nope"]),
        content_type=st.sampled_from(
            [None, "application/json", "application/x-www-form-urlencoded", "text/plain"]
        ),
        body=st.one_of(
            st.binary(max_size=300),
            st.text(max_size=300).map(str.encode),
            JSON_VALUES.map(lambda v: json.dumps(v).encode()),
        ),
    )
    def check(vendor: str, content_type: str | None, body: bytes) -> None:
        before = count_objects(store)
        headers = {"Content-Type": content_type} if content_type else {}
        r = client.post(f"/webhooks/{vendor}", content=body, headers=headers)
        assert r.status_code in {202, 400, 404, 415}, r.text
        assert count_objects(store) == before + (r.status_code == 202)
        if r.status_code == 202:
            assert store.get(r.json()["object_key"])[0] == body

    with client:
        check()
