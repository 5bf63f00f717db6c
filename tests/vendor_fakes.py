"""Fixtures for the vendor HTTP tests: the fake vendor API, settings pointing at it, connections."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from pydantic import SecretStr

from deployments.fake_vendor_api import FakeVendorApi, start_fake_vendor_api
from tasks.vendor_http import TokenSet, VendorClient
from tasks.vendor_settings import VendorApiSettings

REDIRECT_URI = "http://127.0.0.1:9/callback"  # never contacted: the test reads the redirect


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeVendorApi]:
    """A live fake vendor API seeded with the examples; BIOBRIDGE_* settings point at it."""
    with start_fake_vendor_api() as api:
        for name, value in api.env().items():
            monkeypatch.setenv(name, value)
        yield api


@pytest.fixture
def vendor_settings(fake: FakeVendorApi) -> VendorApiSettings:
    """Vendor API settings read from the environment (which points at the fake)."""
    return VendorApiSettings()


@dataclass
class Connection:
    """A connected user: the client and the tokens a code exchange gave."""

    client: VendorClient
    tokens: TokenSet


def connect(client: VendorClient, *, user: str | None = None) -> TokenSet:
    """The OAuth dance without a browser: authorize (the fake redirects back), exchange the code."""
    request = client.authorization_request(redirect_uri=REDIRECT_URI)
    params = {"fake_user": user} if user else None
    answer = httpx.get(request.url, params=params, follow_redirects=False, timeout=10)
    assert answer.status_code == 302, answer.text
    location = urlsplit(answer.headers["location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == REDIRECT_URI
    query = parse_qs(location.query)
    assert query["state"] == [request.state]
    return client.exchange_code(
        SecretStr(query["code"][0]),
        redirect_uri=REDIRECT_URI,
        code_verifier=request.code_verifier,
    )


def secret_values(tokens: TokenSet) -> list[str]:
    """The token strings of a token set (to grep logs and records for)."""
    values = [tokens.access_token.get_secret_value()]
    if tokens.refresh_token is not None:
        values.append(tokens.refresh_token.get_secret_value())
    return values
