"""The fake vendor API itself: pagination styles, vendor quirks, fault matching, remote control."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from deployments.fake_vendor_api import EXAMPLES, REDACTED, TOKEN_PATHS, FakeVendorApi, FaultKind
from tasks.vendor_http import (
    Conflict,
    NeedsReauthorization,
    NotFound,
    RateLimited,
    Unauthorized,
    VendorClient,
    VendorRejected,
    fitbit_day,
    fitbit_subscribe,
    oura_document,
    oura_pages,
    oura_renew_subscription,
    oura_subscribe,
    oura_subscriptions,
    whoop_pages,
    withings_getmeas_pages,
)
from tasks.vendor_settings import POINTER_VENDORS, VendorApiSettings
from tests import vendor_fakes
from tests.helpers import free_port, live_server
from tests.vendor_fakes import connect

fake = vendor_fakes.fake
vendor_settings = vendor_fakes.vendor_settings

OURA_USER = "c2b7e5d0-31f4-4a8e-9d62-0b5f7a3e1c98"


def client_and_token(settings: VendorApiSettings, vendor: str) -> tuple[VendorClient, SecretStr]:
    client = VendorClient(settings.api(vendor))
    return client, connect(client).access_token


def test_oura_collection_pages_are_followed_to_the_end(
    vendor_settings: VendorApiSettings, fake: FakeVendorApi
) -> None:
    for day in range(1, 8):
        body = {"id": f"sleep-day-{day}", "day": f"2025-08-0{day}", "score": 70 + day}
        fake.add_document("oura", "daily_sleep", body, user_id=OURA_USER)
    fake.set_page_size(3)
    client, token = client_and_token(vendor_settings, "oura")
    with client:
        window = {"start_date": "2025-08-02", "end_date": "2025-08-06"}
        pages = list(oura_pages(client, token, "daily_sleep", window))
    assert [len(p["data"]) for p in pages] == [3, 2] and pages[-1]["next_token"] is None
    assert [d["day"] for p in pages for d in p["data"]] == [f"2025-08-0{d}" for d in range(2, 7)]
    sent = [r.params for r in fake.requests("oura") if r.path == "/v2/usercollection/daily_sleep"]
    assert "next_token" not in sent[0] and sent[1]["next_token"] == pages[0]["next_token"]


def test_oura_heartrate_is_a_collection_only(
    vendor_settings: VendorApiSettings, fake: FakeVendorApi
) -> None:
    fake.set_page_size(2)
    client, token = client_and_token(vendor_settings, "oura")
    window = {"start_datetime": "2025-07-28T14:05:00Z", "end_datetime": "2025-07-28T14:15:00Z"}
    with client:
        pages = list(oura_pages(client, token, "heartrate", window))
        with pytest.raises(NotFound):
            oura_document(client, token, "heartrate", "2025-07-28T14:00:00+00:00")
    assert [s["bpm"] for p in pages for s in p["data"]] == [64, 97, 128]


def test_oura_vo2_max_uses_the_mixed_case_rest_path(
    vendor_settings: VendorApiSettings, fake: FakeVendorApi
) -> None:
    fake.add_document(
        "oura", "vo2_max", {"id": "v1", "day": "2025-07-28", "vo2_max": 44}, user_id=OURA_USER
    )
    client, token = client_and_token(vendor_settings, "oura")
    with client:
        assert oura_document(client, token, "vo2_max", "v1")["vo2_max"] == 44
        with pytest.raises(NotFound):
            client.get_json("/v2/usercollection/vo2_max/v1", token=token)
    assert fake.requests("oura")[-2].path == "/v2/usercollection/vO2_max/v1"


def test_whoop_collection_uses_next_token_out_and_nexttoken_in(
    vendor_settings: VendorApiSettings, fake: FakeVendorApi
) -> None:
    base = json.loads((EXAMPLES / "whoop_recovery.json").read_text())
    for i in range(5):
        body = {**base, "cycle_id": 9000 + i, "created_at": f"2025-08-0{i + 1}T12:00:00.000Z"}
        fake.add_document("whoop", "recovery", body, user_id="48213")
    client, token = client_and_token(vendor_settings, "whoop")
    with client:
        pages = list(
            whoop_pages(client, token, "recovery", {"limit": "2", "start": "2025-08-01T00:00:00Z"})
        )
        with pytest.raises(VendorRejected):  # WHOOP caps limit at 25
            client.get_json("/v2/recovery", token=token, params={"limit": "26"})
    assert [len(p["records"]) for p in pages] == [2, 2, 1] and "next_token" not in pages[-1]
    assert [r["cycle_id"] for p in pages for r in p["records"]] == [9004, 9003, 9002, 9001, 9000]
    sent = [r.params for r in fake.requests("whoop") if r.path == "/developer/v2/recovery"]
    assert sent[1]["nextToken"] == pages[0]["next_token"]


def test_withings_getmeas_follows_more_and_offset(
    vendor_settings: VendorApiSettings, fake: FakeVendorApi
) -> None:
    fake.set_page_size(3)
    client, token = client_and_token(vendor_settings, "withings")
    with client:
        pages = list(withings_getmeas_pages(client, token, {"lastupdate": "0"}))
        window = {"startdate": "1753711925", "enddate": "1753711926"}
        in_window = list(withings_getmeas_pages(client, token, window))
    assert [(len(p["measuregrps"]), p["more"]) for p in pages] == [(3, 1), (1, 0)]
    assert [g["grpid"] for g in in_window[0]["measuregrps"]] == [6117420381]
    offsets = [r.params.get("offset") for r in fake.requests("withings") if r.path == "/measure"]
    assert offsets[:2] == [None, "3"]


def test_withings_errors_are_http_200_with_a_status(
    vendor_settings: VendorApiSettings, fake: FakeVendorApi
) -> None:
    answer = httpx.post(
        fake.urls("withings")["api_url"] + "/measure",
        data={"action": "getmeas"},
        headers={"Authorization": "Bearer not-a-token"},
    )
    assert answer.status_code == 200 and answer.json()["status"] == 401
    client, token = client_and_token(vendor_settings, "withings")
    fake.inject(FaultKind.RATE_LIMIT, vendor="withings", path="/measure")
    with client, pytest.raises(RateLimited):
        next(withings_getmeas_pages(client, token, {"lastupdate": "0"}))


def test_withings_old_refresh_token_lives_until_the_new_access_token_is_used(
    vendor_settings: VendorApiSettings, fake: FakeVendorApi
) -> None:
    with VendorClient(vendor_settings.api("withings")) as client:
        first = connect(client)
        client.refresh(first.refresh_token)
        again = client.refresh(first.refresh_token)  # the new token was never used: still valid
        next(withings_getmeas_pages(client, again.access_token, {"lastupdate": "0"}))
        with pytest.raises(NeedsReauthorization, match="grant refused"):
            client.refresh(first.refresh_token)


def test_authorization_codes_expire(
    vendor_settings: VendorApiSettings, fake: FakeVendorApi
) -> None:
    with VendorClient(vendor_settings.api("withings")) as client:
        request = client.authorization_request(redirect_uri=vendor_fakes.REDIRECT_URI)
        location = httpx.get(request.url, follow_redirects=False).headers["location"]
        fake.advance_clock(31)  # Withings codes live 30 s
        code = SecretStr(httpx.URL(location).params["code"])
        with pytest.raises(NeedsReauthorization, match="grant refused"):
            client.exchange_code(code, redirect_uri=vendor_fakes.REDIRECT_URI)


def test_fitbit_answers_by_date_and_accept_language(
    vendor_settings: VendorApiSettings, fake: FakeVendorApi
) -> None:
    client, token = client_and_token(vendor_settings, "fitbit")
    with client:
        metric = fitbit_day(
            client, token, "temp_skin", user_id="-", date="2025-07-28", accept_language="en_GB"
        )
        imperial = fitbit_day(
            client, token, "temp_skin", user_id="-", date="2025-07-28", accept_language="en_US"
        )
        other_day = fitbit_day(
            client, token, "hrv", user_id="B7QK2M", date="2025-07-29", accept_language="en_GB"
        )
        with pytest.raises(VendorRejected):  # another user's data
            fitbit_day(
                client, token, "hrv", user_id="ZZZZZZ", date="2025-07-28", accept_language="en_GB"
            )
    assert metric["tempSkin"][0]["value"]["nightlyRelative"] == -0.4
    assert imperial == {"tempSkin": []} and other_day == {"hrv": []}
    languages = [r.accept_language for r in fake.requests("fitbit") if "/temp/skin/" in r.path]
    assert languages == ["en_GB", "en_US"]


def test_polar_user_registration_is_once(
    vendor_settings: VendorApiSettings, fake: FakeVendorApi
) -> None:
    client, token = client_and_token(vendor_settings, "polar")
    url = client.api.api_url + "/users"
    headers = {"Authorization": f"Bearer {token.get_secret_value()}"}
    with client:
        first = httpx.post(url, json={"member-id": "u-1"}, headers=headers)
        second = httpx.post(url, json={"member-id": "u-1"}, headers=headers)
    assert (first.status_code, second.status_code) == (200, 409)


@pytest.mark.parametrize("vendor", POINTER_VENDORS)
def test_unknown_tokens_and_missing_records(
    vendor: str, vendor_settings: VendorApiSettings, fake: FakeVendorApi
) -> None:
    paths = {
        "oura": "/v2/usercollection/daily_sleep/no-such-id",
        "whoop": "/v2/activity/sleep/no-such-id",
        "fitbit": None,  # a day without data is an empty list, not a 404
        "withings": None,  # getmeas has no 404: an empty window
        "polar": "/exercises/no-such-id",
    }
    client, token = client_and_token(vendor_settings, vendor)
    with client:
        path = paths[vendor] or "/"
        if paths[vendor] is not None:
            with pytest.raises(NotFound):
                client.get_json(path, token=token)
        with pytest.raises(Unauthorized):
            if vendor == "withings":
                client.post_form("/measure", token=SecretStr("unknown"), data={"action": "getmeas"})
            elif vendor == "fitbit":
                fitbit_day(
                    client,
                    SecretStr("unknown"),
                    "hrv",
                    user_id="-",
                    date="2025-07-28",
                    accept_language="en_GB",
                )
            else:
                client.get_json(path, token=SecretStr("unknown"))


def test_faults_match_vendor_path_and_count(
    vendor_settings: VendorApiSettings, fake: FakeVendorApi
) -> None:
    client, token = client_and_token(vendor_settings, "oura")
    fake.inject(
        FaultKind.SERVER_ERROR, vendor="oura", path="/v2/usercollection/daily_sleep/*", times=2
    )
    fake.inject(FaultKind.SERVER_ERROR, vendor="whoop")  # another vendor: never hit here
    with client:
        oura_document(client, token, "daily_readiness", "3f2a7c1e-9b4d-4e2a-8c61-5d0b7e9a2f14")
        outcomes = []
        for _ in range(3):
            try:
                oura_document(client, token, "daily_sleep", "a81c0f55-2d6e-4b19-8f3a-7e0c94d1b2a6")
                outcomes.append("ok")
            except Exception as exc:
                outcomes.append(type(exc).__name__)
    assert outcomes == ["VendorTransient", "VendorTransient", "ok"]
    statuses = [
        (r.path.rsplit("/", 2)[-2], r.status, r.fault)
        for r in fake.requests("oura")
        if r.has_bearer
    ]
    assert statuses == [
        ("daily_readiness", 200, None),
        ("daily_sleep", 500, "server_error"),
        ("daily_sleep", 500, "server_error"),
        ("daily_sleep", 200, None),
    ]


def test_token_calls_are_logged_with_credentials_redacted(
    vendor_settings: VendorApiSettings, fake: FakeVendorApi
) -> None:
    with VendorClient(vendor_settings.api("oura")) as client:
        client.refresh(connect(client).refresh_token)
    calls = [r.params for r in fake.requests("oura") if r.path == TOKEN_PATHS["oura"]]
    assert [c["grant_type"] for c in calls] == ["authorization_code", "refresh_token"]
    assert calls[0]["code"] == REDACTED and calls[1]["refresh_token"] == REDACTED
    assert calls[0]["client_secret"] == REDACTED


def _control(base: str, method: str, path: str, body: Any = None) -> httpx.Response:
    answer = httpx.request(method, f"{base}/_control/{path}", json=body, timeout=10)
    assert answer.status_code < 300, answer.text
    return answer


def test_a_separate_process_is_steered_over_the_control_endpoint() -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "deployments.fake_vendor_api", "--port", str(port)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        base = proc.stdout.readline().strip()
        assert base == f"http://127.0.0.1:{port}"
        printed = [proc.stdout.readline() for _ in range(5 * 4)]
        assert not any("SECRET" in line for line in printed)
        api = f"{base}/whoop/developer"
        tokens = _control(base, "POST", "tokens", {"vendor": "whoop", "user_id": "777"}).json()
        body = {"id": "s-1", "cycle_id": 1, "user_id": 777, "start": "2025-08-01T00:00:00Z"}
        _control(
            base,
            "POST",
            "documents",
            {"vendor": "whoop", "resource": "sleep", "user_id": "777", "body": body},
        )
        _control(
            base, "POST", "faults", {"kind": "rate_limit", "vendor": "whoop", "retry_after_s": 3}
        )
        auth = {"Authorization": f"Bearer {tokens['access_token']}"}
        limited = httpx.get(f"{api}/v2/activity/sleep/s-1", headers=auth)
        served = httpx.get(f"{api}/v2/activity/sleep/s-1", headers=auth)
        assert (limited.status_code, limited.headers["retry-after"]) == (429, "3")
        assert served.json() == body
        _control(base, "POST", "expire", {"vendor": "whoop", "user_id": "777"})
        assert httpx.get(f"{api}/v2/activity/sleep/s-1", headers=auth).status_code == 401
        log = _control(base, "GET", "requests").json()
        assert [(r["status"], r["fault"]) for r in log] == [
            (429, "rate_limit"),
            (200, None),
            (401, None),
        ]
        assert tokens["access_token"] not in json.dumps(log)
        _control(base, "DELETE", "requests")
        assert _control(base, "GET", "requests").json() == []
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _oura_callback(verification_token: str) -> Starlette:
    """A stand-in receiver answering Oura's verification GET."""

    async def verify(request: Request) -> Response:
        if request.query_params.get("verification_token") != verification_token:
            return JSONResponse({"error": "wrong token"}, status_code=401)
        return JSONResponse({"challenge": request.query_params["challenge"]})

    return Starlette(routes=[Route("/webhooks/oura", verify)])


def test_oura_subscriptions_are_verified_unique_and_renewable(
    vendor_settings: VendorApiSettings, fake: FakeVendorApi
) -> None:
    secret = SecretStr("test-only-verification-token")
    with (
        live_server(_oura_callback(secret.get_secret_value())) as receiver,
        VendorClient(vendor_settings.api("oura")) as client,
    ):
        callback = f"{receiver}/webhooks/oura"
        kinds = {"event_type": "create", "data_type": "daily_readiness"}
        sub = oura_subscribe(client, callback_url=callback, verification_token=secret, **kinds)
        with pytest.raises(Conflict):  # one per (event_type, data_type)
            oura_subscribe(client, callback_url=callback, verification_token=secret, **kinds)
        with pytest.raises(VendorRejected):  # the callback refuses a wrong token
            oura_subscribe(
                client,
                callback_url=callback,
                verification_token=SecretStr("test-only-wrong"),
                event_type="update",
                data_type="daily_readiness",
            )
        fake.advance_clock(60)
        renewed = oura_renew_subscription(client, sub["id"])
        listed = oura_subscriptions(client)
    assert renewed["expiration_time"] > sub["expiration_time"]
    assert [s["id"] for s in listed] == [sub["id"]]
    assert secret.get_secret_value() not in json.dumps([r.__dict__ for r in fake.requests()])


def test_fitbit_subscriptions_are_per_user_and_collection(
    vendor_settings: VendorApiSettings, fake: FakeVendorApi
) -> None:
    client, token = client_and_token(vendor_settings, "fitbit")
    with client:
        made = fitbit_subscribe(client, token, collection="sleep", subscription_id="b7qk2m-sleep")
        again = fitbit_subscribe(client, token, collection="sleep", subscription_id="b7qk2m-sleep")
        with pytest.raises(Conflict):  # the id is taken by another collection
            fitbit_subscribe(client, token, collection="body", subscription_id="b7qk2m-sleep")
        listed = client.get_json("/1/user/-/apiSubscriptions.json", token=token)
    assert made == again and made["ownerId"] == "B7QK2M" and made["collectionType"] == "sleep"
    assert listed == {"apiSubscriptions": [made]}


def test_expire_and_revoke_through_the_handle(
    vendor_settings: VendorApiSettings, fake: FakeVendorApi
) -> None:
    with VendorClient(vendor_settings.api("oura")) as client:
        tokens = connect(client)
        fake.expire_tokens("oura", OURA_USER)
        with pytest.raises(Unauthorized):
            oura_document(
                client, tokens.access_token, "daily_sleep", "a81c0f55-2d6e-4b19-8f3a-7e0c94d1b2a6"
            )
        fresh = client.refresh(tokens.refresh_token)
        fake.expire_tokens("oura", OURA_USER, revoke=True)
        with pytest.raises(NeedsReauthorization):
            client.refresh(fresh.refresh_token)


def test_the_command_line_fake_takes_its_clients_from_the_environment() -> None:
    port = free_port()
    env = {**os.environ, "BIOBRIDGE_POLAR_CLIENT_ID": "demo-client"}
    env["BIOBRIDGE_POLAR_CLIENT_SECRET"] = "test-only-demo-secret"
    proc = subprocess.Popen(
        [sys.executable, "-m", "deployments.fake_vendor_api", "--port", str(port)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        base = proc.stdout.readline().strip()
        token_url = f"{base}/polar/v2/oauth2/token"
        form = {"grant_type": "authorization_code", "code": "none"}
        good = httpx.post(token_url, data=form, auth=("demo-client", "test-only-demo-secret"))
        default = httpx.post(
            token_url, data=form, auth=("test-only-polar-client", "test-only-polar-secret")
        )
        assert (good.json()["error"], default.json()["error"]) == (
            "invalid_grant",
            "invalid_client",
        )
    finally:
        proc.terminate()
        proc.wait(timeout=10)
