"""User tokens: Apple Health pushes are authenticated as one user, checked without Postgres,
and revocable through the landing store (both backends), over real HTTP."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr
from starlette.types import ASGIApp

from deployments.cli import main
from landing.keys import RAW_PREFIX
from landing.receiver import create_app
from landing.settings import Settings
from landing.store import ObjectStore
from landing.token_registry import ISSUED_PREFIX, issue_token, list_tokens, revoke_tokens
from landing.tokens import check_token, make_token
from tests.helpers import EXAMPLES, count_objects

SECRET = "token-secret-TEST-ONLY"
HAE = (EXAMPLES / "apple_health_auto_export.json").read_bytes()
GENERIC = json.loads((EXAMPLES / "generic_daily_readiness.json").read_text())
REFRESH_S = 0.3


@pytest.fixture
def token_settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={"token_secret": SecretStr(SECRET), "token_revocation_refresh_s": REFRESH_S}
    )


@pytest.fixture
def client(
    token_settings: Settings, store: ObjectStore, serve: Callable[[ASGIApp], str]
) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=serve(create_app(token_settings, store)), timeout=10) as c:
        yield c


def bearer(token: str, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Content-Type": "application/json", **extra}


def test_token_format_round_trips_and_rejects_forgeries() -> None:
    token = make_token(SECRET.encode(), "user.a@x", "0123456789abcdef")
    assert check_token(SECRET.encode(), token) == ("user.a@x", "0123456789abcdef")
    prefix, user, token_id, mac = token.split(".")
    forged_user = make_token(b"other-TEST-ONLY", "user-b", token_id).split(".")[1]
    for bad in (
        f"{prefix}.{forged_user}.{token_id}.{mac}",  # another user under A's MAC
        f"{prefix}.{user}.fedcba9876543210.{mac}",
        make_token(b"other-TEST-ONLY", "user.a@x", token_id),
        token[:-2],
        "bb1.x.y",
        "",
    ):
        with pytest.raises(ValueError):
            check_token(SECRET.encode(), bad)


def test_a_token_writes_only_its_own_user(client: httpx.Client, store: ObjectStore) -> None:
    token_a, rec_a = issue_token(store, SECRET.encode(), "user-a")
    token_b, _ = issue_token(store, SECRET.encode(), "user-b")

    ok = client.post("/webhooks/apple_health", content=HAE, headers=bearer(token_a))
    assert ok.status_code == 202, ok.text
    _, meta = store.get(ok.json()["object_key"])
    assert meta.context == {"user_id": "user-a"}
    assert meta.signature == "user-token" and meta.signature_verified
    assert token_a.split(".")[-1] not in meta.to_json().decode()
    same = client.post(
        "/webhooks/apple_health", content=HAE, headers=bearer(token_a, **{"X-User-Id": "user-a"})
    )
    assert same.status_code == 202

    refused = [
        client.post(
            "/webhooks/apple_health",
            content=HAE,
            headers=bearer(token_a, **{"X-User-Id": "user-b"}),
        ),
        client.post("/webhooks/apple_health?user_id=user-b", content=HAE, headers=bearer(token_a)),
        client.post(
            "/webhooks/apple_health",
            content=HAE,
            headers=bearer(token_b, **{"X-User-Id": "user-a"}),
        ),
        # The generic shape names its own user: A's token cannot post it for B.
        client.post(
            "/webhooks/apple_health",
            content=json.dumps({**GENERIC, "user_id": "user-b"}).encode(),
            headers=bearer(token_a),
        ),
    ]
    assert [r.status_code for r in refused] == [403, 403, 403, 403]
    assert all(r.json()["error"] == "forbidden" for r in refused)

    for headers in (
        {"X-User-Id": "user-a"},
        bearer("not-a-token"),
        bearer(make_token(b"other-TEST-ONLY", "user-a", rec_a.token_id)),
        {"Authorization": f"Basic {token_a}"},
    ):
        r = client.post("/webhooks/apple_health", content=HAE, headers=headers)
        assert r.status_code == 401, (headers, r.text)
    assert count_objects(store) == 2


def test_revoked_token_is_refused_after_the_refresh_delay(
    client: httpx.Client, store: ObjectStore
) -> None:
    token, record = issue_token(store, SECRET.encode(), "user-a")
    other, _ = issue_token(store, SECRET.encode(), "user-a")
    assert (
        client.post("/webhooks/apple_health", content=HAE, headers=bearer(token)).status_code == 202
    )

    assert revoke_tokens(store, "user-a", record.token_id) == [record.token_id]
    time.sleep(REFRESH_S)  # the documented delay: BIOBRIDGE_TOKEN_REVOCATION_REFRESH_S

    r = client.post("/webhooks/apple_health", content=HAE, headers=bearer(token))
    assert r.status_code == 401 and "revoked" in r.json()["detail"]
    assert (
        client.post("/webhooks/apple_health", content=HAE, headers=bearer(other)).status_code == 202
    )
    assert count_objects(store) == 2


def test_registry_lives_outside_raw_and_never_holds_tokens(store: ObjectStore) -> None:
    t1, r1 = issue_token(store, SECRET.encode(), "user-a")
    t2, r2 = issue_token(store, SECRET.encode(), "user-b")
    assert [r.token_id for r in list_tokens(store, "user-a")] == [r1.token_id]
    assert {r.token_id for r in list_tokens(store)} == {r1.token_id, r2.token_id}
    assert revoke_tokens(store, "user-b") == [r2.token_id]
    assert revoke_tokens(store, "user-b") == []
    with pytest.raises(ValueError, match="no token"):
        revoke_tokens(store, "user-a", "0000000000000000")
    assert [r.revoked_at is not None for r in list_tokens(store, "user-b")] == [True]
    assert list(store.list_keys(RAW_PREFIX)) == []  # discovery sees none of it
    for key in store.list_keys("_auth/"):
        body = store.get(key)[0].decode()
        assert t1.split(".")[-1] not in body and t2.split(".")[-1] not in body
    assert len(list(store.list_keys(ISSUED_PREFIX))) == 2


def test_tokens_cli(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    serve: Callable[[ASGIApp], str],
) -> None:
    from landing.settings import get_settings

    landing_url = (tmp_path / "cli-landing").as_uri()
    monkeypatch.setenv("BIOBRIDGE_LANDING_URL", landing_url)
    get_settings.cache_clear()
    assert main(["tokens", "issue", "--user", "user-a"]) == 2  # no secret yet
    assert "BIOBRIDGE_TOKEN_SECRET" in capsys.readouterr().err

    monkeypatch.setenv("BIOBRIDGE_TOKEN_SECRET", SECRET)
    get_settings.cache_clear()
    try:
        assert main(["tokens", "issue", "--user", "user-a"]) == 0
        token = capsys.readouterr().out.strip()
        token_id = token.split(".")[2]
        assert main(["tokens", "list", "--user", "user-a"]) == 0
        listed = capsys.readouterr().out
        assert token_id in listed and "active" in listed and token.split(".")[-1] not in listed

        settings = get_settings().model_copy(update={"token_revocation_refresh_s": REFRESH_S})
        from landing.store import open_store

        url = serve(create_app(settings, open_store(landing_url, settings)))
        r = httpx.post(f"{url}/webhooks/apple_health", content=HAE, headers=bearer(token))
        assert r.status_code == 202

        assert main(["tokens", "revoke", "--user", "user-a"]) == 0
        assert token_id in capsys.readouterr().out
        time.sleep(REFRESH_S)
        r = httpx.post(f"{url}/webhooks/apple_health", content=HAE, headers=bearer(token))
        assert r.status_code == 401
        assert main(["tokens", "list"]) == 0
        assert "revoked" in capsys.readouterr().out
    finally:
        get_settings.cache_clear()


def test_unreadable_revocation_list_is_503_never_a_guess(
    aws_env: str,
    monkeypatch: pytest.MonkeyPatch,
    token_settings: Settings,
    serve: Callable[[ASGIApp], str],
) -> None:
    from landing.store import open_store
    from tests.helpers import free_port

    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", f"http://127.0.0.1:{free_port()}")
    store = open_store("s3://biobridge-unreachable/landing", token_settings)
    url = serve(create_app(token_settings, store))
    token = make_token(SECRET.encode(), "user-a", "0123456789abcdef")
    r = httpx.post(f"{url}/webhooks/apple_health", content=HAE, headers=bearer(token), timeout=30)
    assert r.status_code == 503 and r.headers["Retry-After"] == "7"
    assert r.json()["error"] == "store_unavailable" and token not in r.text
