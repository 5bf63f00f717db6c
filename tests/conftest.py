"""Shared fixtures: a real S3 endpoint (moto server), both store backends, a live uvicorn server."""

from __future__ import annotations

import logging
import os
import secrets
import signal
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from moto.server import ThreadedMotoServer
from starlette.types import ASGIApp

from landing.receiver import create_app
from landing.settings import Settings
from landing.store import ObjectStore, open_store
from tests.helpers import live_server

pytest_plugins = ["tests.pg", "tests.pipeline"]


def pytest_configure(config: pytest.Config) -> None:
    """Ctrl-C works in the test process and the commands it starts, however it was launched.

    A shell starts a background command (`.ci/run &`, a script's `uv run pytest &`) with SIGINT
    ignored; Python then installs no KeyboardInterrupt handler, and every child inherits the
    ignored signal: the tests of what a Ctrl-C does failed with runs that completed instead
    (seen when CI was started in the background)."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """An S3 HTTP endpoint for the whole session (moto's threaded server on a free port)."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No BIOBRIDGE_* or AWS_* settings leak in from the machine running the tests."""
    for name in list(os.environ):
        if name.startswith(("BIOBRIDGE_", "AWS_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    # Tests read what they posted right after the 202: a local store's receiver answers only
    # once the object is readable. Tests of the default (202 once logged) set it to false.
    monkeypatch.setenv("BIOBRIDGE_ACK_VISIBLE", "true")


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, moto_endpoint: str) -> str:
    """Obviously fake credentials and the moto endpoint, as boto3 reads them from the env."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", moto_endpoint)
    return moto_endpoint


@pytest.fixture(scope="session")
def s3_admin(moto_endpoint: str) -> Any:
    """A boto3 client for fixtures (made once: clients take ~0.1 s to build)."""
    return boto3.client(
        "s3",
        endpoint_url=moto_endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",  # moto accepts any: obviously fake
    )


@pytest.fixture
def bucket(aws_env: str, s3_admin: Any) -> Iterator[str]:
    """A fresh bucket with a random suffix, emptied and removed afterwards."""
    name = f"biobridge-test-{secrets.token_hex(4)}"
    s3_admin.create_bucket(Bucket=name)
    yield name
    for page in s3_admin.get_paginator("list_objects_v2").paginate(Bucket=name):
        if objects := [{"Key": obj["Key"]} for obj in page.get("Contents", [])]:
            s3_admin.delete_objects(Bucket=name, Delete={"Objects": objects, "Quiet": True})
    s3_admin.delete_bucket(Bucket=name)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings for tests: small limits and short timeouts so failures show up fast."""
    return Settings(
        data_dir=tmp_path,
        max_body_bytes=64 * 1024,
        body_timeout_s=5.0,
        s3_max_attempts=2,
        s3_connect_timeout_s=1.0,
        s3_read_timeout_s=5.0,
        retry_after_s=7,
        probe_timeout_s=5.0,
    )


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, settings: Settings, tmp_path: Path) -> ObjectStore:
    """Each backend in turn: a folder under tmp_path, or a prefix in a fresh moto bucket."""
    if request.param == "local":
        return open_store((tmp_path / "landing").as_uri(), settings)
    bucket_name = request.getfixturevalue("bucket")
    return open_store(f"s3://{bucket_name}/landing", settings)


@pytest.fixture
def serve() -> Iterator[Callable[[ASGIApp], str]]:
    """Start apps on live uvicorn servers for this test: `base_url = serve(app)`."""
    with ExitStack() as stack:
        yield lambda app: stack.enter_context(live_server(app))


@pytest.fixture
def url(store: ObjectStore, settings: Settings, serve: Callable[[ASGIApp], str]) -> str:
    """A live receiver over `store` (both backends), as a base URL."""
    return serve(create_app(settings, store))


@pytest.fixture
def client(url: str) -> Iterator[httpx.Client]:
    """An HTTP client of the live receiver."""
    with httpx.Client(base_url=url, timeout=10) as c:
        yield c
