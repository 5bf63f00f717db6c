"""A fake of the pointer vendors' OAuth and data APIs (Oura, WHOOP, Fitbit, Withings, Polar).

A real HTTP server (Starlette on uvicorn, 127.0.0.1, a free port) for the tests and for
`biobridge demo`; nothing reaches the internet. Each vendor lives under `/<vendor>` with its real
paths below that (deployments/examples/OAUTH.md): the authorize URL redirects straight back with
`code` and `state` (no browser), the token endpoint speaks the vendor's client-auth style,
rotation and error shape, and the data routes serve seeded documents with the vendor's
pagination. By default it serves deployments/examples/ keyed so the example notifications
resolve to them.

Steer it through the handle (`FakeVendorApi`) or, from another process, over HTTP:

    GET    /_control/requests      every request received (no token values)
    DELETE /_control/requests      forget them
    POST   /_control/faults        {"kind", "vendor", "path", "times", "retry_after_s", "delay_s"}
    DELETE /_control/faults        no more faults
    POST   /_control/documents     {"vendor", "resource", "user_id", "body", "key", ...}
    POST   /_control/tokens        {"vendor", "user_id", "expires_in"} -> a token pair
    POST   /_control/expire        {"vendor", "user_id", "revoke"} expire (and revoke) tokens

`python -m deployments.fake_vendor_api [--port N]` serves it until interrupted.
"""

from __future__ import annotations

import argparse
import os
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import uvicorn

from deployments.fake_vendor_api.app import create_app, default_credentials
from deployments.fake_vendor_api.state import (
    API_PATHS,
    AUTHORIZE_PATHS,
    EXAMPLES,
    REDACTED,
    TOKEN_PATHS,
    VENDORS,
    FakeVendorState,
    Fault,
    FaultKind,
    RecordedRequest,
    seed_examples,
)

__all__ = [
    "API_PATHS",
    "AUTHORIZE_PATHS",
    "EXAMPLES",
    "REDACTED",
    "TOKEN_PATHS",
    "VENDORS",
    "FakeVendorApi",
    "FakeVendorState",
    "Fault",
    "FaultKind",
    "RecordedRequest",
    "create_app",
    "credentials_from_env",
    "default_credentials",
    "main",
    "seed_examples",
    "start_fake_vendor_api",
]


@dataclass
class FakeVendorApi:
    """A running fake: its base URL, its state and the knobs tests turn."""

    base_url: str
    state: FakeVendorState

    def urls(self, vendor: str) -> dict[str, str]:
        """The vendor's api_url, token_url and authorize_url on this fake."""
        root = f"{self.base_url}/{vendor}"
        return {
            "api_url": root + API_PATHS[vendor],
            "token_url": root + TOKEN_PATHS[vendor],
            "authorize_url": root + AUTHORIZE_PATHS[vendor],
        }

    def env(self) -> dict[str, str]:
        """`BIOBRIDGE_*` variables pointing the vendor settings at this fake (secrets included)."""
        env: dict[str, str] = {}
        for vendor in VENDORS:
            prefix = f"BIOBRIDGE_{vendor.upper()}_"
            for name, url in self.urls(vendor).items():
                env[prefix + name.upper()] = url
            client_id, secret = self.state.credentials[vendor]
            env[prefix + "CLIENT_ID"] = client_id
            env[prefix + "CLIENT_SECRET"] = secret
        return env

    def inject(
        self,
        kind: FaultKind,
        *,
        vendor: str | None = None,
        path: str = "*",
        times: int = 1,
        retry_after_s: int = 1,
        delay_s: float = 0.0,
    ) -> None:
        """Answer the next `times` matching requests with `kind` (see `Fault`)."""
        with self.state.lock:
            self.state.faults.append(Fault(kind, vendor, path, times, retry_after_s, delay_s))

    def clear_faults(self) -> None:
        with self.state.lock:
            self.state.faults.clear()

    def requests(self, vendor: str | None = None) -> list[RecordedRequest]:
        """The requests received so far (of one vendor, or all)."""
        with self.state.lock:
            return [r for r in self.state.requests if vendor in (None, r.vendor)]

    def clear_requests(self) -> None:
        with self.state.lock:
            self.state.requests.clear()

    def add_document(
        self,
        vendor: str,
        resource: str,
        body: Any,
        *,
        user_id: str,
        key: str | None = None,
        accept_language: str | None = None,
    ) -> str:
        """Serve one more document (an Oura/WHOOP record, a Fitbit day, a Withings group...)."""
        return self.state.add_document(
            vendor, resource, body, user_id=user_id, key=key, accept_language=accept_language
        )

    def issue_tokens(
        self, vendor: str, user_id: str, *, expires_in: int | None = None
    ) -> dict[str, Any]:
        """A token answer for `user_id` without the OAuth dance (vendor's shape, unwrapped)."""
        with self.state.lock:
            return self.state.issue(vendor, user_id, expires_in=expires_in)

    def expire_tokens(
        self, vendor: str, user_id: str | None = None, *, revoke: bool = False
    ) -> None:
        """Expire access tokens now; `revoke` also kills the refresh tokens (invalid_grant)."""
        self.state.expire(vendor, user_id, revoke=revoke)

    def login_as(self, vendor: str, user_id: str) -> None:
        """Who "logs in" at the vendor's authorize URL from now on."""
        with self.state.lock:
            self.state.logins[vendor] = user_id

    def advance_clock(self, seconds: float) -> None:
        """Move the fake's clock (token and code expiry) forward."""
        with self.state.lock:
            self.state.clock_offset_s += seconds

    def set_page_size(self, size: int) -> None:
        """Items per page of every collection (small values make multi-page answers)."""
        with self.state.lock:
            self.state.page_size = size


@contextmanager
def start_fake_vendor_api(
    *,
    seed: bool = True,
    credentials: Mapping[str, tuple[str, str]] | None = None,
    port: int = 0,
) -> Iterator[FakeVendorApi]:
    """Serve the fake on 127.0.0.1 (a free port unless `port`) in a thread; stop it on exit."""
    state = FakeVendorState(credentials={**default_credentials(), **(credentials or {})})
    if seed:
        seed_examples(state)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    bound = sock.getsockname()[1]
    config = uvicorn.Config(
        create_app(state), log_level="warning", access_log=False, lifespan="off"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            sock.close()
            raise RuntimeError("fake vendor API did not start")
        time.sleep(0.01)
    try:
        yield FakeVendorApi(f"http://127.0.0.1:{bound}", state)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def credentials_from_env() -> dict[str, tuple[str, str]]:
    """OAuth clients from `BIOBRIDGE_<VENDOR>_CLIENT_ID`/`_CLIENT_SECRET` where both are set,
    so a demo's receiver (signatures) and pipeline (token calls) agree with the fake."""
    found = {}
    for vendor in VENDORS:
        client_id = os.environ.get(f"BIOBRIDGE_{vendor.upper()}_CLIENT_ID")
        secret = os.environ.get(f"BIOBRIDGE_{vendor.upper()}_CLIENT_SECRET")
        if client_id and secret:
            found[vendor] = (client_id, secret)
    return found


def main(argv: list[str] | None = None) -> int:
    """Serve the fake until interrupted; print its base URL and the settings that point at it."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (0: any free)")
    args = parser.parse_args(argv)
    with start_fake_vendor_api(port=args.port, credentials=credentials_from_env()) as fake:
        print(fake.base_url, flush=True)
        for name, value in fake.env().items():
            if not name.endswith("_SECRET"):
                print(f"{name}={value}", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            return 0
