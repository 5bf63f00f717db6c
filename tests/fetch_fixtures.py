"""Fixtures for the fetch tests: the fake vendor API, a pipeline whose receiver checks the
vendors' signatures, users connected through `biobridge connect`'s flow, signed notifications."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.fernet import Fernet

from deployments.demo import sign
from deployments.fake_vendor_api import EXAMPLES, FakeVendorApi, start_fake_vendor_api
from ops.connect import connect_user
from tasks.settings import PipelineSettings
from tasks.vendor_settings import POINTER_VENDORS, VendorApiSettings
from tests.pipeline import Pipeline, make_pipeline

POLAR_SIGNATURE_SECRET = "test-only-polar-signature-secret"
OURA_USER = "c2b7e5d0-31f4-4a8e-9d62-0b5f7a3e1c98"
EVENT_TIME = "2025-07-28T13:42:11.385000+00:00"


@dataclass
class FetchSetup:
    """A pipeline, the fake vendor API it fetches from, and the secrets of the vendors."""

    pipeline: Pipeline
    fake: FakeVendorApi
    secrets: dict[str, str]

    def connect(self, vendor: str, user: str) -> str:
        """Run `biobridge connect`'s flow, following the printed URL like a browser would."""
        out = io.StringIO()

        def browse(url: str) -> None:
            answer = httpx.get(url, follow_redirects=True, timeout=10)
            assert answer.status_code == 200, answer.text

        status = connect_user(
            vendor,
            user=user,
            settings=PipelineSettings(),
            apis=VendorApiSettings(),
            timeout_s=30,
            out=out,
            on_url=browse,
        )
        assert status == 0, out.getvalue()
        return out.getvalue()

    def notify(self, vendor: str, body: bytes) -> httpx.Response:
        """POST a notification over HTTP, signed the way the vendor signs."""
        headers = sign(vendor, self.secrets.get(vendor, ""), body)
        if vendor == "withings":
            headers["content-type"] = "application/x-www-form-urlencoded"
        answer = self.pipeline.post(vendor, body, **headers)
        assert answer.status_code in (200, 202), answer.text  # 200: a handshake (Polar PING)
        return answer


def example(name: str) -> Any:
    return json.loads((EXAMPLES / name).read_text())


def oura_event(
    data_type: str, object_id: str, *, event: str = "create", when: str = EVENT_TIME
) -> bytes:
    body = {
        "event_type": event,
        "data_type": data_type,
        "object_id": object_id,
        "event_time": when,
        "user_id": OURA_USER,
    }
    return json.dumps(body).encode()


def whoop_event(kind: str, record_id: str, *, action: str = "updated") -> bytes:
    body = {"user_id": 48213, "id": record_id, "type": f"{kind}.{action}", "trace_id": "t-1"}
    return json.dumps(body).encode()


def polar_sleep_event(date: str) -> bytes:
    body = {
        "event": "SLEEP",
        "user_id": 90317,
        "date": date,
        "timestamp": "2025-07-28T07:00:00Z",
        "url": f"https://www.polaraccesslink.com/v3/users/sleep/{date}",
    }
    return json.dumps(body).encode()


@pytest.fixture
def fetch_setup(
    prefect_harness: None, pg_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[FetchSetup]:
    """The fake vendor API, every vendor's secrets in the env, and a pipeline receiving."""
    with start_fake_vendor_api() as fake:
        env = fake.env()
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("BIOBRIDGE_POLAR_SIGNATURE_SECRET", POLAR_SIGNATURE_SECRET)
        monkeypatch.setenv("BIOBRIDGE_TOKEN_ENCRYPTION_KEY", Fernet.generate_key().decode())
        monkeypatch.setenv("BIOBRIDGE_SIGNATURE_MAX_AGE_S", "300")
        secrets = {v: env[f"BIOBRIDGE_{v.upper()}_CLIENT_SECRET"] for v in POINTER_VENDORS}
        secrets["polar"] = POLAR_SIGNATURE_SECRET
        for pipeline in make_pipeline(monkeypatch, tmp_path, pg_url, None):
            yield FetchSetup(pipeline=pipeline, fake=fake, secrets=secrets)


def token_strings(fake: FakeVendorApi) -> list[str]:
    """Every access and refresh token the fake ever issued."""
    with fake.state.lock:
        return [*fake.state.access, *fake.state.refresh]
