"""`biobridge connect <vendor> --user U` and `biobridge tokens list|revoke --vendor V`.

Connect runs the OAuth authorization-code flow from a terminal: it prints the vendor's authorize
URL, receives the redirect on a small listener on 127.0.0.1 (a free port, or `--port`), checks
the state, exchanges the code, learns the vendor's user id (and Fitbit's UTC offset), sets up
what the vendor needs (Fitbit per-user subscriptions, Polar user registration; Oura's app-level
subscriptions are checked and renewed when they expire within a week) and stores the tokens
encrypted. Client secrets come from the environment only; no token is ever printed or logged.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TextIO
from urllib.parse import parse_qs, urlsplit

from pydantic import SecretStr

from tasks.settings import PipelineSettings
from tasks.vendor_http import (
    Conflict,
    NotFound,
    TokenSet,
    VendorClient,
    VendorHttpError,
    VendorRejected,
    fitbit_subscribe,
    oura_renew_subscription,
    oura_subscriptions,
)
from tasks.vendor_settings import POINTER_VENDORS, VendorApiSettings
from warehouse import connections as store
from warehouse.migrate import apply_migrations
from warehouse.postgres import connect, resolve_database_url

log = logging.getLogger(__name__)

CALLBACK_PATH = "/callback"
FITBIT_COLLECTIONS = ("activities", "sleep", "body")
OURA_RENEW_WITHIN = timedelta(days=7)


@dataclass
class Callback:
    """What the vendor's redirect brought back."""

    code: SecretStr | None = None
    state: str | None = None
    error: str | None = None


@contextmanager
def callback_listener(port: int = 0) -> Iterator[tuple[str, Callback, threading.Event]]:
    """Serve `GET /callback` on 127.0.0.1:`port` until the first redirect arrives."""
    received = Callback()
    done = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            if parts.path != CALLBACK_PATH or done.is_set():
                self.send_error(404)
                return
            query = parse_qs(parts.query)
            code = query.get("code", [None])[0]
            received.code = SecretStr(code) if code else None
            received.state = query.get("state", [None])[0]
            received.error = query.get("error", [None])[0]
            body = b"Biobridge received the authorization; you can close this window.\n"
            self.send_response(200)
            self.send_header("content-type", "text/plain")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            done.set()

        def log_message(self, format: str, *args: Any) -> None:
            return  # the query holds the code: never log request lines

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}{CALLBACK_PATH}", received, done
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def vendor_user_and_offset(client: VendorClient, tokens: TokenSet) -> tuple[str | None, int | None]:
    """The vendor's id of the user (from the token answer or a profile call), Fitbit's offset."""
    token = tokens.access_token
    vendor = client.vendor
    try:
        if vendor == "oura":
            info = client.get_json("/v2/usercollection/personal_info", token=token)
            return _text(info.get("id")), None
        if vendor == "whoop":
            info = client.get_json("/v2/user/profile/basic", token=token)
            return _text(info.get("user_id")), None
        if vendor == "fitbit":
            info = client.get_json("/1/user/-/profile.json", token=token).get("user", {})
            offset = info.get("offsetFromUTCMillis")
            seconds = int(offset) // 1000 if isinstance(offset, int | float) else None
            return tokens.vendor_user_id or _text(info.get("encodedId")), seconds
    except (NotFound, AttributeError):
        log.warning("vendor=%s: no profile answer; the vendor user id stays unknown", vendor)
    return tokens.vendor_user_id, None


def set_up_vendor(client: VendorClient, tokens: TokenSet, *, user: str, out: TextIO) -> None:
    """Subscriptions and registrations the vendor needs before it notifies us."""
    vendor = client.vendor
    if vendor == "fitbit":
        for collection in FITBIT_COLLECTIONS:
            try:
                fitbit_subscribe(
                    client,
                    tokens.access_token,
                    collection=collection,
                    subscription_id=f"{user}-{collection}",
                )
                print(f"fitbit: subscribed {user} to {collection}", file=out)
            except Conflict:
                print(f"fitbit: subscription {user}-{collection} exists", file=out)
    elif vendor == "polar":
        try:
            client.request_json(
                "POST", "/users", token=tokens.access_token, json={"member-id": user}
            )
            print(f"polar: registered member {user}", file=out)
        except Conflict:
            print(f"polar: member {user} was registered already", file=out)
    elif vendor == "oura":
        renew_oura_subscriptions(client, out=out)


def renew_oura_subscriptions(client: VendorClient, *, out: TextIO) -> int:
    """Renew the app's Oura subscriptions that expire within a week; how many were renewed."""
    subs = oura_subscriptions(client)
    if not subs:
        print(
            "oura: the app has no webhook subscriptions yet; create them once per "
            "(event_type, data_type) with the receiver's public URL (docs/vendors/oura.md)",
            file=out,
        )
    renewed = 0
    soon = datetime.now(UTC) + OURA_RENEW_WITHIN
    for sub in subs:
        expires = _instant(sub.get("expiration_time"))
        if expires is None or expires < soon:
            oura_renew_subscription(client, str(sub["id"]))
            renewed += 1
    print(f"oura: {len(subs)} subscriptions, {renewed} renewed", file=out)
    return renewed


def connect_user(
    vendor: str,
    *,
    user: str,
    settings: PipelineSettings,
    apis: VendorApiSettings,
    port: int = 0,
    timeout_s: float = 300.0,
    out: TextIO = sys.stdout,
    on_url: Callable[[str], None] | None = None,
) -> int:
    """The whole connect flow; exit status 0 when the connection is stored."""
    cipher = store.TokenCipher(settings.token_encryption_key)
    with VendorClient(apis.api(vendor), timeout_s=apis.vendor_timeout_s) as client:
        with callback_listener(port) as (redirect_uri, received, done):
            request = client.authorization_request(redirect_uri=redirect_uri)
            print(f"Open this URL to authorise Biobridge at {vendor}:", file=out)
            print(request.url, file=out, flush=True)
            if on_url is not None:
                on_url(request.url)
            if not done.wait(timeout_s):
                print(f"connect: no callback within {timeout_s:g} s", file=sys.stderr)
                return 1
        if received.error or received.code is None:
            print(f"connect: the vendor refused: {received.error or 'no code'}", file=sys.stderr)
            return 1
        if received.state != request.state:
            print("connect: the callback's state does not match: refused", file=sys.stderr)
            return 1
        try:
            tokens = client.exchange_code(
                received.code, redirect_uri=redirect_uri, code_verifier=request.code_verifier
            )
            vendor_user, offset = vendor_user_and_offset(client, tokens)
            set_up_vendor(client, tokens, user=user, out=out)
        except VendorHttpError as exc:
            print(f"connect: {exc}", file=sys.stderr)
            return 1
    url = resolve_database_url(settings)
    apply_migrations(url)
    with connect(url) as conn:
        store.save_connection(
            conn,
            cipher,
            vendor=vendor,
            user_id=user,
            vendor_user_id=vendor_user,
            access_token=tokens.access_token,
            refresh_token=tokens.refresh_token,
            expires_at=tokens.expires_at,
            scope=tokens.scope,
            utc_offset_s=offset,
        )
    print(f"connected {vendor} user {user} (vendor user {vendor_user}); tokens stored", file=out)
    return 0


def vendor_tokens_command(
    action: str, *, vendor: str, user: str | None, settings: PipelineSettings
) -> int:
    """`biobridge tokens list|revoke --vendor V [--user U]`: stored vendor connections."""
    if vendor not in POINTER_VENDORS:
        print(f"tokens: --vendor must be one of {', '.join(POINTER_VENDORS)}", file=sys.stderr)
        return 2
    url = resolve_database_url(settings)
    apply_migrations(url)
    with connect(url) as conn:
        if action == "list":
            for c in store.list_connections(conn, vendor=vendor):
                reason = f" ({c.status_reason})" if c.status_reason else ""
                print(
                    f"{c.vendor}\t{c.user_id}\tvendor user {c.vendor_user_id}\t{c.status}{reason}"
                    f"\texpires {c.expires_at}\tconnected {c.connected_at}"
                )
            return 0
        if action == "revoke":
            if user is None:
                print("tokens revoke --vendor: --user is required", file=sys.stderr)
                return 2
            changed = store.set_status(
                conn,
                vendor=vendor,
                user_id=user,
                status="revoked",
                reason=f"revoked with `biobridge tokens revoke` at {datetime.now(UTC):%Y-%m-%dT%H:%MZ}",  # noqa: E501
            )
            conn.commit()
            print(f"revoked {changed} {vendor} connection(s) of {user}")
            return 0 if changed else 1
    print(f"tokens {action} --vendor: expected list or revoke", file=sys.stderr)
    return 2


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _instant(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


__all__ = ["VendorRejected", "connect_user", "renew_oura_subscriptions", "vendor_tokens_command"]
