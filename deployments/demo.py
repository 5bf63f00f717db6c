"""`biobridge demo`: post the vendor examples through HTTP, ingest, show what landed.

The pointer vendors (Oura, WHOOP, Fitbit, Withings, Polar) only notify; their data is fetched.
For them the demo starts the fake vendor API (deployments/fake_vendor_api) on 127.0.0.1 with
throwaway credentials, points the vendor settings at it, connects one example user per vendor
through `biobridge connect`'s flow and ingests twice: the first run defers the notifications,
the second fetches the documents they point at and loads them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import json
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from deployments.prefect_env import configure_prefect_env
from landing.settings import get_settings

EXAMPLES = Path(__file__).resolve().parent / "examples"
# What vendors really POST (fetched documents such as oura_sleep.json are not webhooks).
POSTED_RESOURCES = {"generic", "push", "ping", "hae", "webhook", "notification", "notify"}
# One example user per pointer vendor, connected to the fake vendor API's example account.
DEMO_USERS = {
    "oura": "alice",
    "whoop": "bob",
    "fitbit": "carol",
    "withings": "dave",
    "polar": "erin",
}
DEMO_POLAR_SIGNATURE_SECRET = "demo-only-polar-signature-secret"  # noqa: S105 (obviously fake)
KEY_VARIABLE = "BIOBRIDGE_TOKEN_ENCRYPTION_KEY"


def demo_requests() -> Iterator[tuple[str, bytes, dict[str, str]]]:
    """(route vendor, body, headers) for every example a vendor would post to us."""
    for expected_path in sorted(EXAMPLES.glob("*.expected.json")):
        expected = json.loads(expected_path.read_text())
        if expected["resource"] not in POSTED_RESOURCES:
            continue
        body = (EXAMPLES / expected["payload_file"]).read_bytes()
        form = expected["payload_file"].endswith(".txt")
        headers = {
            "content-type": "application/x-www-form-urlencoded" if form else "application/json"
        }
        if expected["vendor"] == "apple_health":
            headers["x-user-id"] = expected["context"]["user_id"]
        routes = (
            ["oura", "apple_health"] if expected["vendor"] == "generic" else [expected["vendor"]]
        )
        for route in routes:
            yield route, body, headers


@contextmanager
def temporary_receiver() -> Iterator[str]:
    """A receiver on a free local port, writing to the configured landing store."""
    import uvicorn

    from landing.receiver import create_app

    settings = get_settings()
    config = uvicorn.Config(
        create_app(settings), host="127.0.0.1", port=0, log_level="warning", lifespan="off"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        threading.Event().wait(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def demo_credentials(vendors: Iterator[str] | list[str]) -> dict[str, tuple[str, str]]:
    """Throwaway OAuth clients for the fake vendor API (never real ones)."""
    return {v: (f"demo-only-{v}-client-id", f"demo-only-{v}-client-secret") for v in vendors}


@contextmanager
def fake_vendor_env(*, sign: bool) -> Iterator[dict[str, str]]:
    """Start the fake vendor API and point the settings at it for the duration of the demo.

    Yields the signing secrets (by vendor) of the in-process receiver when `sign`, else {}.
    The environment and the cached settings are restored afterwards.
    """
    from deployments.fake_vendor_api import VENDORS, start_fake_vendor_api

    with start_fake_vendor_api(credentials=demo_credentials(list(VENDORS))) as fake:
        env = fake.env()
        secrets = {v: env[f"BIOBRIDGE_{v.upper()}_CLIENT_SECRET"] for v in VENDORS}
        if sign:
            env["BIOBRIDGE_POLAR_SIGNATURE_SECRET"] = DEMO_POLAR_SIGNATURE_SECRET
            secrets["polar"] = DEMO_POLAR_SIGNATURE_SECRET
        if not os.environ.get(KEY_VARIABLE):
            from cryptography.fernet import Fernet

            env[KEY_VARIABLE] = Fernet.generate_key().decode()
            print(
                "Tokens stored by the demo are encrypted with a throwaway key made for this run: "
                "reconnect after the demo (or set BIOBRIDGE_TOKEN_ENCRYPTION_KEY)."
            )
        print(f"Fake vendor API on {fake.base_url} (oura, whoop, fitbit, withings, polar)")
        saved = {name: os.environ.get(name) for name in env}
        os.environ.update(env)
        _forget_settings()
        try:
            yield secrets if sign else {}
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
            _forget_settings()


def _forget_settings() -> None:
    from tasks import runtime
    from tasks.vendor_settings import get_vendor_api_settings

    runtime.reset()
    get_vendor_api_settings.cache_clear()


def connect_demo_users() -> int:
    """Connect each example user through the connect flow (the fake redirects straight back)."""
    from ops.connect import connect_user
    from tasks.settings import PipelineSettings
    from tasks.vendor_settings import VendorApiSettings

    def browse(url: str) -> None:
        httpx.get(url, follow_redirects=True, timeout=10)

    connected = 0
    for vendor, user in DEMO_USERS.items():
        out = io.StringIO()
        status = connect_user(
            vendor,
            user=user,
            settings=PipelineSettings(),
            apis=VendorApiSettings(),
            timeout_s=30,
            out=out,
            on_url=browse,
        )
        connected += status == 0
        print(f"connect {vendor:<9} --user {user:<6} {'ok' if status == 0 else 'FAILED'}")
    return connected


def sign(vendor: str, secret: str, body: bytes) -> dict[str, str]:
    """The signature headers `vendor` sends with `body` (deployments/examples/VENDORS.md)."""
    key = secret.encode()
    if vendor == "oura":
        stamp = str(int(time.time()))
        sig = hmac.new(key, stamp.encode() + body, hashlib.sha256).hexdigest().upper()
        return {"x-oura-timestamp": stamp, "x-oura-signature": sig}
    if vendor == "whoop":
        stamp = str(int(time.time() * 1000))
        digest = hmac.new(key, stamp.encode() + body, hashlib.sha256).digest()
        return {
            "X-WHOOP-Signature-Timestamp": stamp,
            "X-WHOOP-Signature": base64.b64encode(digest).decode(),
        }
    if vendor == "fitbit":
        digest = hmac.new(key + b"&", body, hashlib.sha1).digest()
        return {"X-Fitbit-Signature": base64.b64encode(digest).decode()}
    if vendor == "polar":
        return {
            "Polar-Webhook-Signature": hmac.new(key, body, hashlib.sha256).hexdigest(),
            "Polar-Webhook-Event": str(json.loads(body).get("event", "")),
        }
    return {}


def post_examples(receiver_url: str, secrets: dict[str, str] | None = None) -> int:
    """Post every example (signed for the vendors in `secrets`); print each answer; return how
    many were accepted (202, or 200 for a handshake such as Polar's PING)."""
    accepted = 0
    with httpx.Client(base_url=receiver_url, timeout=30) as client:
        for route, body, headers in demo_requests():
            if secrets and route in secrets:
                headers = {**headers, **sign(route, secrets[route], body)}
            resp = client.post(f"/webhooks/{route}", content=body, headers=headers)
            accepted += resp.status_code in (200, 202)
            try:
                where = resp.json().get("object_key") or resp.text
            except ValueError:
                where = resp.text
            print(f"POST /webhooks/{route:<13} {resp.status_code} {where}")
    return accepted


def run_demo(*, receiver_url: str | None) -> int:
    """Connect, post, ingest twice, report. Exit code 1 if a connection or a post was refused or
    an ingest failed. Signatures are sent only to the in-process receiver, whose vendor secrets
    the demo sets itself; a receiver given by URL gets the examples unsigned, as before."""
    with fake_vendor_env(sign=receiver_url is None) as secrets:
        configure_prefect_env(get_settings().data_dir)
        connected = connect_demo_users()
        sent = sum(1 for _ in demo_requests())
        if receiver_url:
            accepted = post_examples(receiver_url)
        else:
            with temporary_receiver() as url:
                accepted = post_examples(url, secrets)
        print(f"{accepted} of {sent} webhooks accepted")

        from deployments.run import run_ingest
        from flows.params import IngestParams

        codes = []
        # Scheduled runs with the defaults. The first loads the pushes and defers the
        # notifications; the second fetches the documents they point at from the (fake) vendor
        # API and loads them.
        for _ in range(2):
            codes.append(run_ingest(IngestParams(), here=True))
    print_landed()
    failed = any(codes) or accepted != sent or connected != len(DEMO_USERS)
    return 1 if failed else 0


def print_landed() -> None:
    """Rows in Postgres per device type and metric."""
    from ops.api import rows_per_metric

    rows = rows_per_metric()
    print(f"\n{'device_type':<14}{'metric_type':<40}{'unit':<10}rows")
    for device, metric, unit, n in rows:
        print(f"{device:<14}{metric:<40}{unit or '':<10}{n}")
    print(f"{sum(r[3] for r in rows)} rows in public.biometric_events")
