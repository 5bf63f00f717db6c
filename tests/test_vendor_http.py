"""The vendor HTTP client over real HTTP against the fake vendor API: OAuth, fetches, errors."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from deployments.fake_vendor_api import EXAMPLES, TOKEN_PATHS, FakeVendorApi, FaultKind
from tasks.vendor_http import (
    NeedsReauthorization,
    NotFound,
    RateLimited,
    TokenSet,
    Unauthorized,
    VendorClient,
    VendorRejected,
    VendorTransient,
    fitbit_day,
    is_transient,
    oura_document,
    polar_event_path,
    polar_path,
    whoop_recovery_for_sleep,
    withings_getmeas_pages,
)
from tasks.vendor_settings import POINTER_VENDORS, VendorApiSettings
from tests import vendor_fakes
from tests.vendor_fakes import REDIRECT_URI, connect, secret_values

fake = vendor_fakes.fake
vendor_settings = vendor_fakes.vendor_settings

DOCUMENTED_LIFETIME_S = {
    "oura": 86400,
    "whoop": 3600,
    "fitbit": 28800,
    "withings": 10800,
    "polar": 31535999,
}


NOTIFY = "withings_measure_notify.txt"


def example(name: str) -> Any:
    return json.loads((EXAMPLES / name).read_text())


def fetch_example(client: VendorClient, token: SecretStr) -> Any:
    """Resolve the vendor's example notification through the API, as the fetch stage will."""
    vendor = client.vendor
    if vendor == "oura":
        event = example("oura_webhook_event.json")
        return oura_document(client, token, event["data_type"], event["object_id"])
    if vendor == "whoop":
        return whoop_recovery_for_sleep(client, token, example("whoop_webhook_event.json")["id"])
    if vendor == "fitbit":
        item = example("fitbit_notification.json")[0]
        return fitbit_day(
            client,
            token,
            "hrv",
            user_id=item["ownerId"],
            date=item["date"],
            accept_language="en_GB",
        )
    if vendor == "withings":  # OAUTH.md: fetch by `lastupdate` rather than the payload window
        form = dict(pair.split("=") for pair in (EXAMPLES / NOTIFY).read_text().strip().split("&"))
        since = {"lastupdate": form["startdate"], "category": "1"}
        return next(withings_getmeas_pages(client, token, since))
    event = example("polar_exercise_event.json")
    return client.get_json(polar_path(client.api.api_url, event["url"]), token=token)


EXPECTED_DOCUMENT = {
    "oura": lambda: example("oura_daily_readiness.json"),
    "whoop": lambda: example("whoop_recovery.json"),
    "fitbit": lambda: example("fitbit_hrv.json"),
    "withings": lambda: example("withings_measures.json")["body"]["measuregrps"],
    "polar": lambda: example("polar_exercise.json"),
}


def document_of(vendor: str, fetched: Any) -> Any:
    return fetched["measuregrps"] if vendor == "withings" else fetched


@pytest.mark.parametrize("vendor", POINTER_VENDORS)
def test_connect_then_the_example_notification_resolves_to_its_document(
    vendor: str, vendor_settings: VendorApiSettings, fake: FakeVendorApi
) -> None:
    with VendorClient(vendor_settings.api(vendor)) as client:
        before = datetime.now(UTC)
        tokens = connect(client)
        fetched = fetch_example(client, tokens.access_token)
    assert document_of(vendor, fetched) == EXPECTED_DOCUMENT[vendor]()
    assert tokens.expires_at is not None
    lifetime = timedelta(seconds=DOCUMENTED_LIFETIME_S[vendor])
    assert before + lifetime <= tokens.expires_at <= datetime.now(UTC) + lifetime
    assert (tokens.refresh_token is None) == (vendor == "polar")
    if vendor in ("fitbit", "withings", "polar"):  # the token answer names the vendor's user
        assert tokens.vendor_user_id == {"fitbit": "B7QK2M", "withings": "38164427"}.get(
            vendor, "90317"
        )
    token_call = next(r for r in fake.requests(vendor) if r.path == TOKEN_PATHS[vendor])
    basic = vendor in ("fitbit", "polar")
    assert token_call.has_basic == basic
    assert ("client_secret" in token_call.params) == (not basic)


def test_authorize_urls_follow_each_vendors_rules(vendor_settings: VendorApiSettings) -> None:
    whoop = VendorClient(vendor_settings.api("whoop")).authorization_request(
        redirect_uri=REDIRECT_URI
    )
    fitbit = VendorClient(vendor_settings.api("fitbit")).authorization_request(
        redirect_uri=REDIRECT_URI
    )
    withings = VendorClient(vendor_settings.api("withings")).authorization_request(
        redirect_uri=REDIRECT_URI
    )
    assert len(whoop.state) == 8 and "offline" in whoop.url and whoop.code_verifier is None
    assert "code_challenge_method=S256" in fitbit.url and fitbit.code_verifier is not None
    assert fitbit.code_verifier.get_secret_value() not in fitbit.url
    assert "scope=user.info%2Cuser.metrics" in withings.url  # comma-separated scopes


def test_a_code_is_single_use_and_pkce_is_checked(vendor_settings: VendorApiSettings) -> None:
    with VendorClient(vendor_settings.api("fitbit")) as client:
        request = client.authorization_request(redirect_uri=REDIRECT_URI)
        location = httpx.get(request.url, follow_redirects=False).headers["location"]
        code = SecretStr(location.split("code=")[1].split("&")[0])
        with pytest.raises(NeedsReauthorization):
            client.exchange_code(code, redirect_uri=REDIRECT_URI, code_verifier=SecretStr("wrong"))
        with pytest.raises(NeedsReauthorization):  # a failed attempt spent the code too
            client.exchange_code(
                code, redirect_uri=REDIRECT_URI, code_verifier=request.code_verifier
            )


@pytest.mark.parametrize("vendor", ["oura", "whoop", "withings", "fitbit"])
def test_refresh_rotates_and_the_old_refresh_token_is_spent(
    vendor: str, vendor_settings: VendorApiSettings, fake: FakeVendorApi
) -> None:
    with VendorClient(vendor_settings.api(vendor)) as client:
        first = connect(client)
        second = client.refresh(first.refresh_token)
        assert second.access_token != first.access_token
        assert second.refresh_token is not None and second.refresh_token != first.refresh_token
        if vendor == "fitbit":  # identical refreshes within 2 minutes get the same answer
            assert client.refresh(first.refresh_token).access_token == second.access_token
            fake.advance_clock(121)
        fetch_example(client, second.access_token)  # Withings: the old one dies on first use
        with pytest.raises(NeedsReauthorization):
            client.refresh(first.refresh_token)
        if vendor == "whoop":  # WHOOP also invalidates the old access token
            with pytest.raises(Unauthorized):
                fetch_example(client, first.access_token)
        third = client.refresh(second.refresh_token)
        fetch_example(client, third.access_token)


def test_polar_has_no_refresh_so_a_401_means_reauthorise(
    vendor_settings: VendorApiSettings, fake: FakeVendorApi
) -> None:
    with VendorClient(vendor_settings.api("polar")) as client:
        tokens = connect(client)
        fake.inject(FaultKind.GRANT_REVOKED, vendor="polar")
        with pytest.raises(Unauthorized):
            fetch_example(client, tokens.access_token)
        calls = len(fake.requests("polar"))
        with pytest.raises(NeedsReauthorization):
            client.refresh(tokens.refresh_token)
        assert len(fake.requests("polar")) == calls  # no pointless call


@pytest.mark.parametrize("vendor", ["oura", "whoop", "fitbit", "withings"])  # Polar: see above
def test_expired_token_then_a_good_refresh_works(
    vendor: str, vendor_settings: VendorApiSettings, fake: FakeVendorApi
) -> None:
    with VendorClient(vendor_settings.api(vendor)) as client:
        tokens = connect(client)
        fake.inject(FaultKind.TOKEN_EXPIRED, vendor=vendor)
        with pytest.raises(Unauthorized):
            fetch_example(client, tokens.access_token)
        with pytest.raises(Unauthorized):  # it stays expired: only a refresh helps
            fetch_example(client, tokens.access_token)
        fresh = client.refresh(tokens.refresh_token)
        assert (
            document_of(vendor, fetch_example(client, fresh.access_token))
            == EXPECTED_DOCUMENT[vendor]()
        )


@pytest.mark.parametrize("vendor", POINTER_VENDORS)
def test_revoked_grant_makes_the_refresh_fail_invalid_grant(
    vendor: str, vendor_settings: VendorApiSettings, fake: FakeVendorApi
) -> None:
    with VendorClient(vendor_settings.api(vendor)) as client:
        tokens = connect(client)
        fake.inject(FaultKind.GRANT_REVOKED, vendor=vendor)
        with pytest.raises(Unauthorized):
            fetch_example(client, tokens.access_token)
        with pytest.raises(NeedsReauthorization):
            client.refresh(tokens.refresh_token)


@pytest.mark.parametrize("vendor", POINTER_VENDORS)
@pytest.mark.parametrize(
    ("kind", "error"),
    [
        (FaultKind.RATE_LIMIT, RateLimited),
        (FaultKind.SERVER_ERROR, VendorTransient),
        (FaultKind.NOT_FOUND, NotFound),
    ],
)
def test_each_fault_becomes_its_typed_error_and_then_passes(
    vendor: str,
    kind: FaultKind,
    error: type[Exception],
    vendor_settings: VendorApiSettings,
    fake: FakeVendorApi,
) -> None:
    with VendorClient(vendor_settings.api(vendor)) as client:
        tokens = connect(client)
        fake.inject(kind, vendor=vendor, retry_after_s=7)
        with pytest.raises(error) as caught:
            fetch_example(client, tokens.access_token)
        assert is_transient(caught.value) == (kind is not FaultKind.NOT_FOUND)
        if isinstance(caught.value, RateLimited):  # Withings says 601 in the body, no header
            assert caught.value.retry_after_s == (60 if vendor == "withings" else 7)
        assert (
            document_of(vendor, fetch_example(client, tokens.access_token))
            == EXPECTED_DOCUMENT[vendor]()
        )
        assert [r.fault for r in fake.requests(vendor) if r.fault] == [kind.value]


def test_a_slow_vendor_times_out_as_transient(
    vendor_settings: VendorApiSettings, fake: FakeVendorApi
) -> None:
    with VendorClient(vendor_settings.api("oura"), timeout_s=0.2) as client:
        tokens = connect(client)
        fake.inject(FaultKind.SLOW, vendor="oura", path="/v2/usercollection/*", delay_s=2.0)
        with pytest.raises(VendorTransient, match="timed out"):
            fetch_example(client, tokens.access_token)


def test_whoop_recovery_follows_the_sleep_to_its_cycle(
    vendor_settings: VendorApiSettings, fake: FakeVendorApi
) -> None:
    with VendorClient(vendor_settings.api("whoop")) as client:
        fetch_example(client, connect(client).access_token)
    paths = [r.path for r in fake.requests("whoop") if r.path.startswith("/developer/")]
    sleep_id = example("whoop_webhook_event.json")["id"]
    cycle_id = example("whoop_sleep.json")["cycle_id"]
    assert paths == [
        f"/developer/v2/activity/sleep/{sleep_id}",
        f"/developer/v2/cycle/{cycle_id}/recovery",
    ]


def test_bad_client_credentials_are_a_permanent_rejection(
    fake: FakeVendorApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    for vendor in POINTER_VENDORS:
        monkeypatch.setenv(f"BIOBRIDGE_{vendor.upper()}_CLIENT_SECRET", "test-only-wrong")
        # Withings answers every token failure with body status 503: it reads as a dead grant.
        error = NeedsReauthorization if vendor == "withings" else VendorRejected
        with VendorClient(VendorApiSettings().api(vendor)) as client, pytest.raises(error):
            connect(client)


def test_polar_sleep_events_are_fetched_by_date(
    vendor_settings: VendorApiSettings, fake: FakeVendorApi
) -> None:
    event = {
        "event": "SLEEP",
        "user_id": 90317,
        "date": "2025-07-28",
        "url": "https://www.polaraccesslink.com/v3/users/sleep/getSleepByDate/2025-07-28",
    }
    with VendorClient(vendor_settings.api("polar")) as client:
        token = connect(client).access_token
        path = polar_event_path(client.api.api_url, event)
        assert client.get_json(path, token=token) == example("polar_sleep.json")


def test_polar_url_is_only_followed_on_accesslink() -> None:
    api = "http://127.0.0.1:1/polar/v3"
    assert (
        polar_path(api, "https://www.polaraccesslink.com/v3/exercises/Xk3p9QvN")
        == "/exercises/Xk3p9QvN"
    )
    with pytest.raises(VendorRejected):
        polar_path(api, "https://evil.example/v3/exercises/Xk3p9QvN")


def test_settings_default_to_the_real_vendors_and_are_overridable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = VendorApiSettings().api("withings")
    assert real.token_url == "https://wbsapi.withings.net/v2/oauth2" and real.client_secret is None
    monkeypatch.setenv("BIOBRIDGE_OURA_API_URL", "http://127.0.0.1:1/oura/")
    monkeypatch.setenv("BIOBRIDGE_OURA_CLIENT_SECRET", "test-only-secret")
    oura = VendorApiSettings().api("oura")
    assert oura.api_url == "http://127.0.0.1:1/oura"
    assert "test-only-secret" not in repr(oura) and "test-only-secret" not in repr(
        VendorApiSettings()
    )
    with pytest.raises(ValueError, match="unknown pointer vendor"):
        VendorApiSettings().api("garmin")


def test_no_token_reaches_a_log_line_an_error_a_repr_or_the_request_log(
    vendor_settings: VendorApiSettings, fake: FakeVendorApi, caplog: pytest.LogCaptureFixture
) -> None:
    tokens: list[TokenSet] = []
    errors: list[Exception] = []
    with caplog.at_level(logging.DEBUG):
        for vendor in POINTER_VENDORS:
            with VendorClient(vendor_settings.api(vendor)) as client:
                first = connect(client)
                tokens.append(first)
                fetch_example(client, first.access_token)
                for kind in (FaultKind.RATE_LIMIT, FaultKind.SERVER_ERROR, FaultKind.TOKEN_EXPIRED):
                    fake.inject(kind, vendor=vendor)
                    try:
                        fetch_example(client, first.access_token)
                    except (RateLimited, VendorTransient, Unauthorized) as exc:
                        errors.append(exc)
                if vendor != "polar":
                    tokens.append(client.refresh(first.refresh_token))
                fake.inject(FaultKind.GRANT_REVOKED, vendor=vendor)
                try:
                    fetch_example(client, tokens[-1].access_token)
                except Unauthorized as exc:
                    errors.append(exc)
                try:
                    client.refresh(tokens[-1].refresh_token)
                except NeedsReauthorization as exc:
                    errors.append(exc)
    assert len(errors) == 5 * 5
    assert any("vendor=oura" in r.getMessage() for r in caplog.records)  # it did log
    texts = [
        caplog.text,
        *(str(e) + repr(e) for e in errors),
        *(repr(t) + str(t) for t in tokens),
        json.dumps([r.__dict__ for r in fake.requests()], default=str),
    ]
    for token_set in tokens:
        for value in secret_values(token_set):
            assert not any(value in text for text in texts), "a token leaked"
    assert all(
        r.has_bearer for r in fake.requests() if r.method == "GET" and "usercollection" in r.path
    )


def test_readme_documents_the_vendor_settings() -> None:
    readme = (EXAMPLES.parents[1] / "README.md").read_text()
    for name in VendorApiSettings.model_fields:
        vendor, _, rest = name.partition("_")
        generic = f"BIOBRIDGE_<VENDOR>_{rest.upper()}" if vendor in POINTER_VENDORS else ""
        specific = f"BIOBRIDGE_{name.upper()}"
        assert specific in readme or generic in readme, f"document {specific} in the README"
