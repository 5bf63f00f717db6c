"""Open routes are a choice: logged on loopback, refused on a public bind unless opted out."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr
from starlette.types import ASGIApp

from landing.open_routes import CREDENTIALS, OpenRoutesRefused, check_open_routes, is_loopback
from landing.receiver import create_app
from landing.settings import Settings
from landing.store import ObjectStore
from tests.helpers import free_port

SECRETS = {
    "BIOBRIDGE_OURA_CLIENT_SECRET": "oura-TEST-ONLY",
    "BIOBRIDGE_WHOOP_CLIENT_SECRET": "whoop-TEST-ONLY",
    "BIOBRIDGE_FITBIT_CLIENT_SECRET": "fitbit-TEST-ONLY",
    "BIOBRIDGE_POLAR_SIGNATURE_SECRET": "polar-TEST-ONLY",
    "BIOBRIDGE_GARMIN_CLIENT_ID": "garmin-TEST-ONLY",
    "BIOBRIDGE_TOKEN_SECRET": "token-TEST-ONLY",
    "BIOBRIDGE_GENERIC_TOKEN": "generic-TEST-ONLY",
}


def all_secrets(settings: Settings, **extra: object) -> Settings:
    update: dict[str, object] = {
        name.removeprefix("BIOBRIDGE_").lower(): value for name, value in SECRETS.items()
    }
    for field, value in list(update.items()):
        if field != "garmin_client_id":
            update[field] = SecretStr(str(value))
    return settings.model_copy(update={**update, **extra})


def test_loopback_quick_start_logs_every_open_route(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="biobridge.receiver"):
        routes = check_open_routes(settings)
    assert routes == list(CREDENTIALS)
    assert "OPEN ROUTES" in caplog.text and "withings" in caplog.text
    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.2"):
        assert is_loopback(host)
    for host in ("0.0.0.0", "::", "10.0.0.5", "receiver.example"):
        assert not is_loopback(host)


def test_public_bind_refuses_open_routes_and_names_the_settings(settings: Settings) -> None:
    public = settings.model_copy(update={"host": "0.0.0.0"})
    with pytest.raises(OpenRoutesRefused) as info:
        check_open_routes(public)
    message = str(info.value)
    for name in (*SECRETS, "BIOBRIDGE_OPEN_ROUTES", "withings"):
        assert name in message, name

    only_withings = all_secrets(public)
    with pytest.raises(OpenRoutesRefused, match="BIOBRIDGE_OPEN_ROUTES=withings"):
        check_open_routes(only_withings)
    assert check_open_routes(all_secrets(public, open_routes="withings")) == ["withings"]
    opted = public.model_copy(update={"open_routes": ",".join(CREDENTIALS)})
    assert check_open_routes(opted) == list(CREDENTIALS)
    with pytest.raises(ValueError, match="unknown routes"):
        check_open_routes(public.model_copy(update={"open_routes": "withings,nope"}))


def test_readyz_lists_open_routes(
    settings: Settings, store: ObjectStore, serve: Callable[[ASGIApp], str]
) -> None:
    url = serve(create_app(all_secrets(settings, open_routes="withings"), store))
    r = httpx.get(f"{url}/readyz")
    assert r.status_code == 200
    assert r.json() == {"status": "ready", "open_routes": ["withings"]}
    assert r.headers["biobridge-open-routes"] == "withings"
    partly = settings.model_copy(update={"whoop_client_secret": SecretStr("w-TEST-ONLY")})
    r = httpx.get(f"{serve(create_app(partly, store))}/readyz")
    assert "whoop" not in r.json()["open_routes"] and "oura" in r.json()["open_routes"]
    quick = httpx.get(f"{serve(create_app(settings, store))}/readyz")
    assert quick.headers["biobridge-open-routes"] == ",".join(CREDENTIALS)


def _start(tmp_path: Path, extra: dict[str, str]) -> tuple[subprocess.Popen[str], int]:
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("BIOBRIDGE_")},
        "BIOBRIDGE_LANDING_URL": (tmp_path / "landing").as_uri(),
        "BIOBRIDGE_HOST": "0.0.0.0",
        "BIOBRIDGE_PORT": str(port),
        **extra,
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "landing.server"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    return proc, port


def test_server_refuses_a_public_bind_with_open_routes(tmp_path: Path) -> None:
    proc, _ = _start(tmp_path, {})
    try:
        _, stderr = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode != 0
    assert "refusing to serve" in stderr and "BIOBRIDGE_OPEN_ROUTES" in stderr
    assert "BIOBRIDGE_OURA_CLIENT_SECRET" in stderr


def test_server_starts_publicly_once_every_route_is_covered(tmp_path: Path) -> None:
    proc, port = _start(tmp_path, {**SECRETS, "BIOBRIDGE_OPEN_ROUTES": "withings"})
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/readyz")
                break
            except httpx.TransportError:
                assert proc.poll() is None and time.monotonic() < deadline, "did not start"
                time.sleep(0.05)
        assert r.status_code == 200 and r.json()["open_routes"] == ["withings"]
    finally:
        proc.terminate()
        _, stderr = proc.communicate(timeout=10)
    assert "OPEN ROUTES" in stderr and "withings" in stderr
    for secret in SECRETS.values():
        assert secret not in stderr


def test_health_lists_open_routes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from deployments.cli import main
    from landing.settings import get_settings

    monkeypatch.setenv("BIOBRIDGE_LANDING_URL", (tmp_path / "landing").as_uri())
    monkeypatch.setenv("BIOBRIDGE_DATABASE_URL", f"postgresql://nobody@127.0.0.1:{free_port()}/x")
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("BIOBRIDGE_WHOOP_CLIENT_SECRET")
    get_settings.cache_clear()
    try:
        main(["health", "--json"])  # the database is down: unhealthy, but it still reports
        assert json.loads(capsys.readouterr().out)["open_routes"] == ["whoop", "withings"]
        main(["health"])
        assert "open routes     whoop, withings" in capsys.readouterr().out
    finally:
        get_settings.cache_clear()
