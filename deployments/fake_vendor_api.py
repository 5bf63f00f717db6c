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
import asyncio
import base64
import fnmatch
import hashlib
import json
import os
import secrets
import socket
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

VENDORS = ("oura", "whoop", "fitbit", "withings", "polar")
EXAMPLES = Path(__file__).resolve().parent / "examples"
REDACTED = "<redacted>"
_CREDENTIAL_FIELDS = frozenset(
    {
        "access_token",
        "refresh_token",
        "code",
        "client_secret",
        "code_verifier",
        "id_token",
        "verification_token",
    }
)

# Documented lifetimes (OAUTH.md): access token seconds, authorization code seconds.
ACCESS_LIFETIME_S = {
    "oura": 86400,
    "whoop": 3600,
    "fitbit": 28800,
    "withings": 10800,
    "polar": 31535999,
}
CODE_LIFETIME_S = {"oura": 600, "whoop": 600, "fitbit": 600, "withings": 30, "polar": 600}
OURA_SUBSCRIPTION_LIFETIME_S = 90 * 86400  # open-wearables' figure (unconfirmed by Oura)
FITBIT_REPLAY_WINDOW_S = 120.0  # identical refreshes within 2 min get the same answer
WITHINGS_OLD_REFRESH_GRACE_S = 8 * 3600.0  # until the new access token is first used

# Vendor-relative paths of the OAuth endpoints (the API base is the vendor prefix itself).
AUTHORIZE_PATHS = {
    "oura": "/oauth/authorize",
    "whoop": "/oauth/oauth2/auth",
    "fitbit": "/oauth2/authorize",
    "withings": "/oauth2_user/authorize2",
    "polar": "/oauth2/authorization",
}
TOKEN_PATHS = {
    "oura": "/oauth/token",
    "whoop": "/oauth/oauth2/token",
    "fitbit": "/oauth2/token",
    "withings": "/v2/oauth2",
    "polar": "/v2/oauth2/token",
}
API_PATHS = {"oura": "", "whoop": "/developer", "fitbit": "", "withings": "", "polar": "/v3"}
CLIENT_AUTH = {  # accepted at the token endpoint
    "oura": {"body", "basic"},
    "whoop": {"body"},
    "fitbit": {"basic"},
    "withings": {"body"},
    "polar": {"basic"},
}
DEFAULT_USERS = {
    "oura": "c2b7e5d0-31f4-4a8e-9d62-0b5f7a3e1c98",
    "whoop": "48213",
    "fitbit": "B7QK2M",
    "withings": "38164427",
    "polar": "90317",
}
FITBIT_LIST_KEYS = {
    "activities-heart": "activities-heart",
    "hrv": "hrv",
    "temp_skin": "tempSkin",
    "temp_core": "tempCore",
}


class FaultKind(StrEnum):
    """What the fake does instead of answering normally."""

    RATE_LIMIT = "rate_limit"  # 429 + Retry-After (Withings: HTTP 200, status 601)
    SERVER_ERROR = "server_error"  # 500
    TOKEN_EXPIRED = "token_expired"  # noqa: S105 - a fault name; the presented access token expires now: 401; refresh works
    GRANT_REVOKED = "grant_revoked"  # 401 and the user's refresh tokens die: invalid_grant
    NOT_FOUND = "not_found"  # 404
    SLOW = "slow"  # wait `delay_s`, then answer normally


@dataclass
class Fault:
    """Answer the next `times` requests of `vendor` whose path matches the glob `path` with `kind`.

    `path` is relative to the vendor prefix, e.g. `/v2/usercollection/*` or `/oauth/token`.
    """

    kind: FaultKind
    vendor: str | None = None
    path: str = "*"
    times: int = 1
    retry_after_s: int = 1
    delay_s: float = 0.0


@dataclass(frozen=True)
class RecordedRequest:
    """One request the fake received; credential values are redacted, tokens never kept."""

    vendor: str | None
    method: str
    path: str  # relative to the vendor prefix
    params: dict[str, str]  # query and form fields, credentials redacted
    has_bearer: bool
    has_basic: bool
    accept_language: str | None
    status: int
    fault: str | None


@dataclass
class _Grant:
    vendor: str
    user_id: str
    scope: str
    revoked: bool = False


@dataclass
class _Access:
    grant: _Grant
    expires_at: float
    valid: bool = True
    used: bool = False


@dataclass
class _Refresh:
    grant: _Grant
    used_at: float | None = None
    answer: dict[str, Any] | None = None  # Fitbit replays it within the window
    successor: str | None = None  # the access token issued in exchange for this one


@dataclass
class _Code:
    vendor: str
    user_id: str
    client_id: str
    redirect_uri: str
    scope: str
    challenge: str | None
    expires_at: float


@dataclass
class _Doc:
    body: Any
    stamp: str  # for filtering and ordering (a date, date-time or epoch as text)


@dataclass
class FakeVendorState:
    """Everything the fake knows; shared by the server thread and the handle, under `lock`."""

    credentials: dict[str, tuple[str, str]]
    lock: threading.Lock = field(default_factory=threading.Lock)
    page_size: int = 50
    clock_offset_s: float = 0.0
    logins: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_USERS))
    docs: dict[tuple[str, str, str], dict[str, _Doc]] = field(default_factory=dict)
    codes: dict[str, _Code] = field(default_factory=dict)
    access: dict[str, _Access] = field(default_factory=dict)
    refresh: dict[str, _Refresh] = field(default_factory=dict)
    registered: set[tuple[str, str]] = field(default_factory=set)
    oura_subscriptions: dict[str, dict[str, Any]] = field(default_factory=dict)
    fitbit_subscriptions: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    verify_callbacks: bool = True  # Oura checks a callback (challenge) before subscribing it
    faults: list[Fault] = field(default_factory=list)
    requests: list[RecordedRequest] = field(default_factory=list)

    def now(self) -> float:
        return time.time() + self.clock_offset_s

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
        """Serve `body` as `resource` of `user_id`; returns the key it is found under."""
        key, stamp = _key_and_stamp(vendor, resource, body, key)
        if vendor == "fitbit":
            key = f"{key}|{_units(accept_language)}"
        with self.lock:
            self.docs.setdefault((vendor, resource, str(user_id)), {})[key] = _Doc(body, stamp)
        return key

    def issue(
        self, vendor: str, user_id: str, scope: str = "", *, expires_in: int | None = None
    ) -> dict[str, Any]:
        """A fresh token answer for `user_id` in `vendor`'s shape (call under `lock`)."""
        grant = _Grant(vendor, str(user_id), scope)
        return self._answer(grant, expires_in)

    def _answer(self, grant: _Grant, expires_in: int | None = None) -> dict[str, Any]:
        vendor = grant.vendor
        lifetime = ACCESS_LIFETIME_S[vendor] if expires_in is None else expires_in
        access = f"fake-{vendor}-access-{secrets.token_urlsafe(18)}"
        self.access[access] = _Access(grant, self.now() + lifetime)
        answer: dict[str, Any] = {
            "access_token": access,
            "token_type": "Bearer" if vendor in ("fitbit", "withings") else "bearer",
            "expires_in": lifetime,
        }
        if vendor != "polar":
            refresh = f"fake-{vendor}-refresh-{secrets.token_urlsafe(18)}"
            self.refresh[refresh] = _Refresh(grant)
            answer["refresh_token"] = refresh
            answer["scope"] = grant.scope
        if vendor == "fitbit":
            answer["user_id"] = grant.user_id
        if vendor == "withings":
            answer["userid"] = grant.user_id
            answer["csrf_token"] = secrets.token_hex(8)
        if vendor == "polar":
            answer["x_user_id"] = int(grant.user_id) if grant.user_id.isdigit() else grant.user_id
        return answer

    def expire(self, vendor: str, user_id: str | None = None, *, revoke: bool = False) -> None:
        """Expire the access tokens of `vendor` (one user or all); `revoke` kills the grants too."""
        with self.lock:
            for token in self.access.values():
                if token.grant.vendor == vendor and user_id in (None, token.grant.user_id):
                    token.valid = False
            if revoke:
                grants = [t.grant for t in self.access.values()]
                grants += [r.grant for r in self.refresh.values()]
                for grant in grants:
                    if grant.vendor == vendor and user_id in (None, grant.user_id):
                        grant.revoked = True


def _key_and_stamp(vendor: str, resource: str, body: Any, key: str | None) -> tuple[str, str]:
    """Where a document is found (its id or date) and what orders and filters it."""
    b: Mapping[str, Any] = body if isinstance(body, dict) else {}
    if vendor == "oura":
        if resource == "heartrate":
            return key or str(b["timestamp"]), str(b["timestamp"])
        return key or str(b["id"]), str(b.get("day") or b.get("timestamp") or "")
    if vendor == "whoop":
        stamp = str(b.get("created_at") if resource == "recovery" else b.get("start"))
        return key or str(b["cycle_id"] if resource == "recovery" else b["id"]), stamp
    if vendor == "fitbit":
        entries = b.get(FITBIT_LIST_KEYS[resource]) or [{}]
        date = key or str(entries[0].get("dateTime", ""))[:10]
        return date, date
    if vendor == "withings":
        return key or str(b["grpid"]), str(b.get("date", 0))
    if vendor == "polar":
        if resource == "sleep":
            return key or str(b["date"]), str(b["date"])
        return key or str(b["id"]), str(b.get("start-time", ""))
    raise ValueError(f"unknown vendor {vendor!r}: expected one of {', '.join(VENDORS)}")


def _units(accept_language: str | None) -> str:
    """Fitbit answers imperial units to en_US and metric to anything else."""
    return "en_US" if (accept_language or "").replace("-", "_") == "en_US" else "metric"


def seed_examples(state: FakeVendorState, examples: Path = EXAMPLES) -> None:
    """Serve deployments/examples/ so the example notifications resolve to their documents."""

    def load(name: str) -> Any:
        return json.loads((examples / f"{name}.json").read_text())

    def user(name: str) -> str:
        context = load(f"{name}.expected")["context"] or {}
        return str(context["user_id"])

    for resource in ("daily_readiness", "daily_sleep", "daily_activity", "sleep", "daily_spo2"):
        state.add_document(
            "oura", resource, load(f"oura_{resource}"), user_id=user(f"oura_{resource}")
        )
    for item in load("oura_heartrate")["data"]:
        state.add_document("oura", "heartrate", item, user_id=user("oura_heartrate"))
    for resource in ("recovery", "sleep", "cycle", "workout"):
        body = load(f"whoop_{resource}")
        state.add_document("whoop", resource, body, user_id=str(body["user_id"]))
    for name, resource in (
        ("fitbit_heart_rate_summary", "activities-heart"),
        ("fitbit_hrv", "hrv"),
        ("fitbit_temp_skin", "temp_skin"),
    ):
        context = load(f"{name}.expected")["context"]
        state.add_document(
            "fitbit",
            resource,
            load(name),
            user_id=context["user_id"],
            accept_language=context.get("accept_language"),
        )
    for group in load("withings_measures")["body"]["measuregrps"]:
        state.add_document("withings", "measuregrp", group, user_id=user("withings_measures"))
    event = load("polar_exercise_event")
    state.add_document(
        "polar",
        "exercise",
        load("polar_exercise"),
        user_id=user("polar_exercise"),
        key=event["entity_id"],
    )
    state.add_document("polar", "sleep", load("polar_sleep"), user_id=user("polar_sleep"))


# Vendor-shaped error answers


def _oauth_error(vendor: str, status: int, error: str, description: str) -> Response:
    if vendor == "fitbit":
        body: dict[str, Any] = {
            "errors": [{"errorType": error, "message": description}],
            "success": False,
        }
        return JSONResponse(body, status_code=status)
    if vendor == "withings":  # HTTP 200, status in the body; bad code or grant is 503
        return JSONResponse({"status": 503, "body": {}, "error": f"Invalid Params: {description}"})
    return JSONResponse({"error": error, "error_description": description}, status_code=status)


def _unauthorized(vendor: str, *, expired: bool) -> Response:
    what = "expired" if expired else "invalid"
    if vendor == "fitbit":
        kind = "expired_token" if expired else "invalid_token"
        return JSONResponse(
            {"errors": [{"errorType": kind, "message": f"Access token {what}"}], "success": False},
            status_code=401,
            headers={"WWW-Authenticate": 'Bearer realm="api.fitbit.com"'},
        )
    if vendor == "withings":
        return JSONResponse(
            {
                "status": 401,
                "body": {},
                "error": (
                    "XRequestID: Not provided invalid_token: The access token provided is invalid"
                ),
            }
        )
    if vendor == "polar":
        return Response(status_code=401)
    if vendor == "oura":
        return JSONResponse({"detail": f"Access token {what}"}, status_code=401)
    return JSONResponse(
        {"error": "invalid_token", "message": f"Access token {what}"}, status_code=401
    )


def _not_found(vendor: str) -> Response:
    if vendor == "fitbit":
        body = {
            "errors": [{"errorType": "not_found", "message": "Resource not found"}],
            "success": False,
        }
        return JSONResponse(body, status_code=404)
    if vendor == "polar":
        return Response(status_code=404)
    return JSONResponse({"detail": "Not Found"}, status_code=404)


def _rate_limited(vendor: str, retry_after_s: int) -> Response:
    if vendor == "withings":  # HTTP 200 with status 601, no header
        return JSONResponse({"status": 601, "body": {}, "error": "Too many requests"})
    headers = {"Retry-After": str(retry_after_s)}
    if vendor == "fitbit":
        headers |= {
            "Fitbit-Rate-Limit-Limit": "150",
            "Fitbit-Rate-Limit-Remaining": "0",
            "Fitbit-Rate-Limit-Reset": str(retry_after_s),
        }
    elif vendor == "polar":
        headers |= {
            "RateLimit-Usage": "500",
            "RateLimit-Limit": "500",
            "RateLimit-Reset": str(retry_after_s),
        }
    else:
        headers |= {
            "X-RateLimit-Limit": "100",
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": str(retry_after_s),
        }
    return JSONResponse({"error": "too_many_requests"}, status_code=429, headers=headers)


# Request plumbing: faults, bearer checks, the request log

Handler = Callable[[Request, FakeVendorState, str], Awaitable[Response]]


class _Reject(Exception):
    def __init__(self, response: Response) -> None:
        self.response = response


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def _basic(request: Request) -> tuple[str, str] | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, _, password = base64.b64decode(value.strip()).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return None
    return user, password


async def _form(request: Request) -> dict[str, str]:
    """A urlencoded form body as {field: last value} (no multipart needed by any vendor)."""
    if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        return {}
    return dict(
        parse_qsl((await request.body()).decode("utf-8", "replace"), keep_blank_values=True)
    )


def _user_of(request: Request, state: FakeVendorState, vendor: str) -> str:
    """The user of the bearer token, or a vendor-shaped 401."""
    token = _bearer(request)
    with state.lock:
        entry = state.access.get(token) if token else None
        if entry is None or entry.grant.vendor != vendor:
            raise _Reject(_unauthorized(vendor, expired=False))
        if not entry.valid or entry.grant.revoked or entry.expires_at <= state.now():
            raise _Reject(_unauthorized(vendor, expired=True))
        entry.used = True
        return entry.grant.user_id


def _params(query: Mapping[str, str], form: Mapping[str, Any]) -> dict[str, str]:
    merged = {**query, **{k: str(v) for k, v in form.items()}}
    return {k: (REDACTED if k in _CREDENTIAL_FIELDS else v) for k, v in merged.items()}


def _take_fault(state: FakeVendorState, vendor: str, path: str) -> Fault | None:
    with state.lock:
        for fault in state.faults:
            if (
                fault.times > 0
                and fault.vendor in (None, vendor)
                and fnmatch.fnmatchcase(path, fault.path)
            ):
                fault.times -= 1
                return fault
    return None


def _apply_fault(
    fault: Fault, request: Request, state: FakeVendorState, vendor: str
) -> Response | None:
    if fault.kind is FaultKind.RATE_LIMIT:
        return _rate_limited(vendor, fault.retry_after_s)
    if fault.kind is FaultKind.SERVER_ERROR:
        return Response("fake vendor: injected server error", status_code=500)
    if fault.kind is FaultKind.NOT_FOUND:
        return _not_found(vendor)
    if fault.kind in (FaultKind.TOKEN_EXPIRED, FaultKind.GRANT_REVOKED):
        token = _bearer(request)
        with state.lock:
            entry = state.access.get(token) if token else None
            if entry is not None:
                entry.valid = False
                if fault.kind is FaultKind.GRANT_REVOKED:
                    entry.grant.revoked = True
        return _unauthorized(vendor, expired=True)
    return None  # SLOW: the delay was served, answer normally


def _endpoint(vendor: str, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """Wrap a vendor handler: faults first, then the handler, and record the request."""

    async def endpoint(request: Request) -> Response:
        state: FakeVendorState = request.app.state.fake
        path = request.url.path[len(vendor) + 1 :] or "/"
        form = await _form(request)
        fault = _take_fault(state, vendor, path)
        response: Response | None = None
        if fault is not None:
            if fault.kind is FaultKind.SLOW:
                await asyncio.sleep(fault.delay_s)
            response = _apply_fault(fault, request, state, vendor)
        if response is None:
            try:
                response = await handler(request, state, vendor)
            except _Reject as reject:
                response = reject.response
        record = RecordedRequest(
            vendor=vendor,
            method=request.method,
            path=path,
            params=_params(request.query_params, form),
            has_bearer=_bearer(request) is not None,
            has_basic=_basic(request) is not None,
            accept_language=request.headers.get("accept-language"),
            status=response.status_code,
            fault=fault.kind.value if fault else None,
        )
        with state.lock:
            state.requests.append(record)
        return response

    return endpoint


# OAuth


async def _authorize(request: Request, state: FakeVendorState, vendor: str) -> Response:
    q = request.query_params
    client_id, _ = state.credentials[vendor]
    redirect_uri = q.get("redirect_uri", "")
    problem = None
    if q.get("client_id") != client_id:
        problem = "unknown client_id"
    elif q.get("response_type") != "code":
        problem = "response_type must be code"
    elif not redirect_uri.startswith(("http://", "https://")):
        problem = "redirect_uri required"
    elif vendor == "whoop" and len(q.get("state", "")) != 8:
        problem = "state must be 8 characters"
    elif vendor == "fitbit" and not q.get("scope"):
        problem = "scope required"
    elif q.get("code_challenge") and q.get("code_challenge_method") != "S256":
        problem = "code_challenge_method must be S256"
    if problem:
        return JSONResponse(
            {"error": "invalid_request", "error_description": problem}, status_code=400
        )
    code = secrets.token_urlsafe(24)
    with state.lock:
        user = q.get("fake_user") or state.logins[vendor]
        state.codes[code] = _Code(
            vendor=vendor,
            user_id=user,
            client_id=client_id,
            redirect_uri=redirect_uri,
            scope=q.get("scope", ""),
            challenge=q.get("code_challenge"),
            expires_at=state.now() + CODE_LIFETIME_S[vendor],
        )
    back = {"code": code, "state": q.get("state", "")}
    if vendor == "oura":
        back["scope"] = q.get("scope", "")
    separator = "&" if "?" in redirect_uri else "?"
    return RedirectResponse(f"{redirect_uri}{separator}{urlencode(back)}", status_code=302)


def _client_ok(
    request: Request, form: Mapping[str, Any], state: FakeVendorState, vendor: str
) -> bool:
    client_id, secret = state.credentials[vendor]
    styles = CLIENT_AUTH[vendor]
    basic = _basic(request)
    if basic is not None:
        return "basic" in styles and basic == (client_id, secret)
    return "body" in styles and (form.get("client_id"), form.get("client_secret")) == (
        client_id,
        secret,
    )


async def _token(request: Request, state: FakeVendorState, vendor: str) -> Response:
    form = await _form(request)
    if vendor == "withings" and form.get("action") != "requesttoken":
        return _oauth_error(vendor, 400, "invalid_request", "action must be requesttoken")
    if not _client_ok(request, form, state, vendor):
        return _oauth_error(vendor, 401, "invalid_client", "client authentication failed")
    grant_type = form.get("grant_type")
    with state.lock:
        if grant_type == "authorization_code":
            answer = _exchange(state, vendor, form)
        elif grant_type == "refresh_token" and vendor != "polar":
            answer = _rotate(state, vendor, str(form.get("refresh_token", "")))
        else:
            return _oauth_error(vendor, 400, "unsupported_grant_type", "grant type not supported")
    if isinstance(answer, Response):
        return answer
    if vendor == "withings":
        return JSONResponse({"status": 0, "body": answer})
    return JSONResponse(answer)


def _exchange(
    state: FakeVendorState, vendor: str, form: Mapping[str, Any]
) -> dict[str, Any] | Response:
    code = state.codes.pop(str(form.get("code", "")), None)  # single use
    if code is None or code.vendor != vendor or code.expires_at <= state.now():
        return _oauth_error(vendor, 400, "invalid_grant", "authorization code invalid or expired")
    if form.get("redirect_uri") != code.redirect_uri:
        return _oauth_error(vendor, 400, "invalid_grant", "redirect_uri does not match")
    if code.challenge is not None:
        verifier = str(form.get("code_verifier", ""))
        digest = hashlib.sha256(verifier.encode()).digest()
        if base64.urlsafe_b64encode(digest).rstrip(b"=").decode() != code.challenge:
            return _oauth_error(vendor, 400, "invalid_grant", "code_verifier does not match")
    return state.issue(vendor, code.user_id, code.scope)


def _rotate(state: FakeVendorState, vendor: str, token: str) -> dict[str, Any] | Response:
    entry = state.refresh.get(token)
    now = state.now()
    if entry is None or entry.grant.vendor != vendor or entry.grant.revoked:
        return _oauth_error(
            vendor, 400, "invalid_grant", "refresh token invalid, expired or revoked"
        )
    if entry.used_at is not None:
        if vendor == "fitbit" and entry.answer and now - entry.used_at < FITBIT_REPLAY_WINDOW_S:
            return entry.answer
        successor = state.access.get(entry.successor or "")
        still_valid = (
            vendor == "withings"
            and successor is not None
            and not successor.used
            and now - entry.used_at < WITHINGS_OLD_REFRESH_GRACE_S
        )
        if not still_valid:
            return _oauth_error(vendor, 400, "invalid_grant", "refresh token already used")
    if vendor == "whoop":  # the old access token dies with the old refresh token
        for access in state.access.values():
            if access.grant is entry.grant:
                access.valid = False
    answer = state._answer(entry.grant)
    entry.used_at, entry.answer, entry.successor = now, answer, answer["access_token"]
    return answer


# Data routes


def _docs(state: FakeVendorState, vendor: str, resource: str, user: str) -> dict[str, _Doc]:
    with state.lock:
        return dict(state.docs.get((vendor, resource, user), {}))


def _page(items: list[Any], cursor: str | None, size: int) -> tuple[list[Any], str | None]:
    start = int(base64.urlsafe_b64decode(cursor.encode()).decode()) if cursor else 0
    end = start + size
    following = base64.urlsafe_b64encode(str(end).encode()).decode() if end < len(items) else None
    return items[start:end], following


def _instant(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


async def _oura_document(request: Request, state: FakeVendorState, vendor: str) -> Response:
    user = _user_of(request, state, vendor)
    data_type = request.path_params["data_type"]
    if data_type in ("heartrate", "vo2_max"):  # no single-document route; REST says vO2_max
        return _not_found(vendor)
    resource = "vo2_max" if data_type == "vO2_max" else data_type
    doc = _docs(state, vendor, resource, user).get(request.path_params["object_id"])
    return JSONResponse(doc.body) if doc else _not_found(vendor)


async def _oura_collection(request: Request, state: FakeVendorState, vendor: str) -> Response:
    user = _user_of(request, state, vendor)
    data_type = request.path_params["data_type"]
    resource = "vo2_max" if data_type == "vO2_max" else data_type
    q = request.query_params
    docs = sorted(_docs(state, vendor, resource, user).values(), key=lambda d: d.stamp)
    try:
        if resource == "heartrate":
            lo = _instant(q["start_datetime"]) if "start_datetime" in q else float("-inf")
            hi = _instant(q["end_datetime"]) if "end_datetime" in q else float("inf")
            docs = [d for d in docs if lo <= _instant(d.stamp) <= hi]
        else:
            lo_day, hi_day = q.get("start_date", ""), q.get("end_date", "9999-12-31")
            docs = [d for d in docs if lo_day <= d.stamp[:10] <= hi_day]
        items, following = _page([d.body for d in docs], q.get("next_token"), state.page_size)
    except (ValueError, KeyError):
        return JSONResponse({"detail": "invalid parameters"}, status_code=422)
    return JSONResponse({"data": items, "next_token": following})


async def _whoop_record(request: Request, state: FakeVendorState, vendor: str) -> Response:
    user = _user_of(request, state, vendor)
    resource = request.path_params["resource"]
    doc = _docs(state, vendor, resource, user).get(str(request.path_params["record_id"]))
    return JSONResponse(doc.body) if doc else _not_found(vendor)


async def _whoop_cycle_child(request: Request, state: FakeVendorState, vendor: str) -> Response:
    user = _user_of(request, state, vendor)
    cycle_id = str(request.path_params["cycle_id"])
    if request.path_params["child"] == "recovery":
        doc = _docs(state, vendor, "recovery", user).get(cycle_id)
    else:
        sleeps = _docs(state, vendor, "sleep", user).values()
        doc = next((d for d in sleeps if str(d.body.get("cycle_id")) == cycle_id), None)
    return JSONResponse(doc.body) if doc else _not_found(vendor)


async def _whoop_collection(request: Request, state: FakeVendorState, vendor: str) -> Response:
    user = _user_of(request, state, vendor)
    resource = request.path_params["resource"]
    q = request.query_params
    try:
        limit = int(q.get("limit", "10"))
        lo = _instant(q["start"]) if "start" in q else float("-inf")
        hi = _instant(q["end"]) if "end" in q else float("inf")
    except ValueError:
        return JSONResponse({"error": "invalid parameters"}, status_code=400)
    if not 1 <= limit <= 25:
        return JSONResponse({"error": "limit must be between 1 and 25"}, status_code=400)
    docs = sorted(_docs(state, vendor, resource, user).values(), key=lambda d: _instant(d.stamp))
    docs = [d for d in reversed(docs) if lo <= _instant(d.stamp) < hi]  # newest first
    items, following = _page(
        [d.body for d in docs], q.get("nextToken"), min(limit, state.page_size)
    )
    answer: dict[str, Any] = {"records": items}
    if following:
        answer["next_token"] = following
    return JSONResponse(answer)


async def _whoop_profile(request: Request, state: FakeVendorState, vendor: str) -> Response:
    user = _user_of(request, state, vendor)
    return JSONResponse(
        {
            "user_id": int(user) if user.isdigit() else user,
            "email": "someone@example.invalid",
            "first_name": "Test",
            "last_name": "User",
        }
    )


async def _fitbit_day(request: Request, state: FakeVendorState, vendor: str) -> Response:
    user = _user_of(request, state, vendor)
    owner = request.path_params["user"]
    if owner not in ("-", user):
        body = {
            "errors": [
                {"errorType": "insufficient_permissions", "message": "not this user's data"}
            ],
            "success": False,
        }
        return JSONResponse(body, status_code=403)
    resource = request.path_params["resource"]
    date = request.path_params["date"]
    units = _units(request.headers.get("accept-language"))
    doc = _docs(state, vendor, resource, user).get(f"{date}|{units}")
    if doc is None:  # Fitbit answers an empty list for a day without data
        return JSONResponse({FITBIT_LIST_KEYS[resource]: []})
    return JSONResponse(doc.body)


async def _withings_measure(request: Request, state: FakeVendorState, vendor: str) -> Response:
    user = _user_of(request, state, vendor)
    params = {**request.query_params, **(await _form(request))}
    if params.get("action") != "getmeas":
        return JSONResponse({"status": 503, "body": {}, "error": "Invalid Params: action"})
    try:
        start = int(params.get("startdate", "0"))
        end = int(params.get("enddate", str(2**62)))
        lastupdate = int(params["lastupdate"]) if "lastupdate" in params else None
        offset = int(params.get("offset", "0"))
        types = {
            int(t)
            for t in (params.get("meastypes") or params.get("meastype") or "").split(",")
            if t
        }
        category = int(params["category"]) if "category" in params else None
    except ValueError:
        return JSONResponse({"status": 503, "body": {}, "error": "Invalid Params"})
    groups = []
    for doc in sorted(
        _docs(state, vendor, "measuregrp", user).values(), key=lambda d: int(d.stamp)
    ):
        g: dict[str, Any] = dict(doc.body)
        if lastupdate is not None:
            if int(g.get("modified", g["date"])) < lastupdate:
                continue
        elif not start <= int(g["date"]) <= end:
            continue
        if category is not None and g.get("category") != category:
            continue
        if types:
            g["measures"] = [m for m in g.get("measures", []) if m.get("type") in types]
            if not g["measures"]:
                continue
        groups.append(g)
    page = groups[offset : offset + state.page_size]
    more = offset + state.page_size < len(groups)
    body: dict[str, Any] = {
        "updatetime": int(state.now()),
        "timezone": "America/Los_Angeles",
        "measuregrps": page,
        "more": 1 if more else 0,
        "offset": offset + len(page) if more else 0,
    }
    return JSONResponse({"status": 0, "body": body})


async def _polar_document(request: Request, state: FakeVendorState, vendor: str) -> Response:
    user = _user_of(request, state, vendor)
    resource = "sleep" if "date" in request.path_params else "exercise"
    key = request.path_params.get("date") or request.path_params["exercise_id"]
    doc = _docs(state, vendor, resource, user).get(str(key))
    return JSONResponse(doc.body) if doc else _not_found(vendor)


async def _polar_register(request: Request, state: FakeVendorState, vendor: str) -> Response:
    user = _user_of(request, state, vendor)
    try:
        member = json.loads(await request.body())["member-id"]
    except (ValueError, KeyError, TypeError):
        return JSONResponse({"error": "member-id required"}, status_code=400)
    with state.lock:
        if (vendor, user) in state.registered:
            return Response(status_code=409)
        state.registered.add((vendor, user))
    return JSONResponse(
        {"polar-user-id": int(user) if user.isdigit() else user, "member-id": member}
    )


# Subscriptions: Oura's per app (client headers), Fitbit's per user (bearer)


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")


async def _oura_subscriptions(request: Request, state: FakeVendorState, vendor: str) -> Response:
    client_id, secret = state.credentials[vendor]
    sent = (request.headers.get("x-client-id"), request.headers.get("x-client-secret"))
    if sent != (client_id, secret):
        return JSONResponse({"detail": "invalid client credentials"}, status_code=401)
    sub_id = request.path_params.get("sub_id")
    with state.lock:
        subs = state.oura_subscriptions
        if request.method == "GET" and sub_id is None:
            return JSONResponse(list(subs.values()))
        if sub_id is not None and sub_id not in subs:
            return _not_found(vendor)
        if request.method == "DELETE" and sub_id is not None:
            del subs[sub_id]
            return Response(status_code=204)
        if request.method == "PUT" and sub_id is not None:  # renew
            subs[sub_id]["expiration_time"] = _iso(state.now() + OURA_SUBSCRIPTION_LIFETIME_S)
            return JSONResponse(subs[sub_id])
        if sub_id is not None:
            return JSONResponse(subs[sub_id])
    try:
        spec = await request.json()
        wanted = {k: str(spec[k]) for k in ("callback_url", "event_type", "data_type")}
        verification_token = str(spec["verification_token"])
    except (ValueError, KeyError, TypeError):
        return JSONResponse({"detail": "invalid subscription"}, status_code=422)
    with state.lock:
        taken = any(
            (s["event_type"], s["data_type"]) == (wanted["event_type"], wanted["data_type"])
            for s in state.oura_subscriptions.values()
        )
    if taken:
        return JSONResponse({"detail": "subscription exists"}, status_code=409)
    if state.verify_callbacks and not await _challenge(wanted["callback_url"], verification_token):
        return JSONResponse({"detail": "callback verification failed"}, status_code=400)
    sub = {"id": secrets.token_hex(8), **wanted}
    with state.lock:
        sub["expiration_time"] = _iso(state.now() + OURA_SUBSCRIPTION_LIFETIME_S)
        state.oura_subscriptions[sub["id"]] = sub
    return JSONResponse(sub, status_code=201)


async def _challenge(callback_url: str, verification_token: str) -> bool:
    """Oura's check: GET callback?verification_token=&challenge= must echo the challenge."""
    challenge = secrets.token_urlsafe(12)
    params = {"verification_token": verification_token, "challenge": challenge}
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            answer = await client.get(callback_url, params=params)
        return bool(answer.status_code == 200 and answer.json() == {"challenge": challenge})
    except (httpx.HTTPError, ValueError):
        return False


async def _fitbit_subscription(request: Request, state: FakeVendorState, vendor: str) -> Response:
    user = _user_of(request, state, vendor)
    collection = request.path_params.get("collection")
    sub_id = request.path_params["sub_id"]
    if request.method == "POST" and "content-length" not in request.headers:
        return JSONResponse(
            {"errors": [{"errorType": "request", "message": "Content-Length required"}]},
            status_code=411,
        )
    sub = {
        "collectionType": collection or "user",
        "ownerId": user,
        "ownerType": "user",
        "subscriberId": request.headers.get("x-fitbit-subscriber-id", "1"),
        "subscriptionId": sub_id,
    }
    with state.lock:
        known = state.fitbit_subscriptions.get((user, sub_id))
        if request.method == "DELETE":
            if known is None:
                return _not_found(vendor)
            del state.fitbit_subscriptions[(user, sub_id)]
            return Response(status_code=204)
        if known is not None:
            return JSONResponse(known, status_code=200 if known == sub else 409)
        state.fitbit_subscriptions[(user, sub_id)] = sub
    return JSONResponse(sub, status_code=201)


async def _fitbit_subscriptions(request: Request, state: FakeVendorState, vendor: str) -> Response:
    user = _user_of(request, state, vendor)
    collection = request.path_params.get("collection")
    with state.lock:
        subs = [
            s
            for (owner, _), s in state.fitbit_subscriptions.items()
            if owner == user and collection in (None, s["collectionType"])
        ]
    return JSONResponse({"apiSubscriptions": subs})


def _vendor_routes() -> list[BaseRoute]:
    def route(
        vendor: str, path: str, handler: Handler, methods: tuple[str, ...] = ("GET",)
    ) -> Route:
        return Route(f"/{vendor}{path}", _endpoint(vendor, handler), methods=list(methods))

    routes: list[BaseRoute] = []
    for vendor in VENDORS:
        routes.append(route(vendor, AUTHORIZE_PATHS[vendor], _authorize))
        routes.append(route(vendor, TOKEN_PATHS[vendor], _token, ("POST",)))
    w = API_PATHS["whoop"]
    routes += [
        route("oura", "/v2/usercollection/{data_type}/{object_id}", _oura_document),
        route("oura", "/v2/usercollection/{data_type}", _oura_collection),
        route("whoop", w + "/v2/user/profile/basic", _whoop_profile),
        route("whoop", w + "/v2/cycle/{cycle_id}/{child:str}", _whoop_cycle_child),
        route("whoop", w + "/v2/activity/sleep/{record_id}", _as("sleep", _whoop_record)),
        route("whoop", w + "/v2/activity/workout/{record_id}", _as("workout", _whoop_record)),
        route("whoop", w + "/v2/cycle/{record_id}", _as("cycle", _whoop_record)),
        route("whoop", w + "/v2/activity/sleep", _as("sleep", _whoop_collection)),
        route("whoop", w + "/v2/activity/workout", _as("workout", _whoop_collection)),
        route("whoop", w + "/v2/cycle", _as("cycle", _whoop_collection)),
        route("whoop", w + "/v2/recovery", _as("recovery", _whoop_collection)),
        route(
            "fitbit",
            "/1/user/{user}/activities/heart/date/{date}/1d.json",
            _as("activities-heart", _fitbit_day),
        ),
        route("fitbit", "/1/user/{user}/hrv/date/{date}.json", _as("hrv", _fitbit_day)),
        route("fitbit", "/1/user/{user}/temp/skin/date/{date}.json", _as("temp_skin", _fitbit_day)),
        route("fitbit", "/1/user/{user}/temp/core/date/{date}.json", _as("temp_core", _fitbit_day)),
        route("withings", "/measure", _withings_measure, ("GET", "POST")),
        route("polar", "/v3/exercises/{exercise_id}", _polar_document),
        route("polar", "/v3/users/sleep/{date}", _polar_document),
        route("polar", "/v3/users", _polar_register, ("POST",)),
        route("oura", "/v2/webhook/subscription", _oura_subscriptions, ("GET", "POST")),
        route("oura", "/v2/webhook/subscription/renew/{sub_id}", _oura_subscriptions, ("PUT",)),
        route("oura", "/v2/webhook/subscription/{sub_id}", _oura_subscriptions, ("GET", "DELETE")),
        route("fitbit", "/1/user/-/apiSubscriptions.json", _fitbit_subscriptions),
        route("fitbit", "/1/user/-/{collection}/apiSubscriptions.json", _fitbit_subscriptions),
        route(
            "fitbit",
            "/1/user/-/apiSubscriptions/{sub_id}.json",
            _fitbit_subscription,
            ("POST", "DELETE"),
        ),
        route(
            "fitbit",
            "/1/user/-/{collection}/apiSubscriptions/{sub_id}.json",
            _fitbit_subscription,
            ("POST", "DELETE"),
        ),
    ]
    return routes


def _as(resource: str, handler: Handler) -> Handler:
    """`handler` with `resource` fixed by the route (the vendor's path names it)."""

    async def with_resource(request: Request, state: FakeVendorState, vendor: str) -> Response:
        request.path_params["resource"] = resource
        return await handler(request, state, vendor)

    return with_resource


# Control routes (for a demo or flow run in another process)


async def _control_requests(request: Request) -> Response:
    state: FakeVendorState = request.app.state.fake
    with state.lock:
        if request.method == "DELETE":
            state.requests.clear()
            return Response(status_code=204)
        return JSONResponse([asdict(r) for r in state.requests])


async def _control_faults(request: Request) -> Response:
    state: FakeVendorState = request.app.state.fake
    if request.method == "DELETE":
        with state.lock:
            state.faults.clear()
        return Response(status_code=204)
    try:
        spec = await request.json()
        fault = Fault(**{**spec, "kind": FaultKind(spec["kind"])})
    except (ValueError, KeyError, TypeError) as exc:
        return JSONResponse({"error": f"bad fault: {exc}"}, status_code=400)
    with state.lock:
        state.faults.append(fault)
    return Response(status_code=204)


async def _control_documents(request: Request) -> Response:
    state: FakeVendorState = request.app.state.fake
    try:
        spec = await request.json()
        key = state.add_document(
            spec["vendor"],
            spec["resource"],
            spec["body"],
            user_id=str(spec["user_id"]),
            key=spec.get("key"),
            accept_language=spec.get("accept_language"),
        )
    except (ValueError, KeyError, TypeError) as exc:
        return JSONResponse({"error": f"bad document: {exc}"}, status_code=400)
    return JSONResponse({"key": key}, status_code=201)


async def _control_tokens(request: Request) -> Response:
    state: FakeVendorState = request.app.state.fake
    try:
        spec = await request.json()
        with state.lock:
            answer = state.issue(
                spec["vendor"], str(spec["user_id"]), expires_in=spec.get("expires_in")
            )
    except (ValueError, KeyError, TypeError) as exc:
        return JSONResponse({"error": f"bad token request: {exc}"}, status_code=400)
    return JSONResponse(answer)


async def _control_expire(request: Request) -> Response:
    state: FakeVendorState = request.app.state.fake
    try:
        spec = await request.json()
        state.expire(spec["vendor"], spec.get("user_id"), revoke=bool(spec.get("revoke")))
    except (ValueError, KeyError, TypeError) as exc:
        return JSONResponse({"error": f"bad expire request: {exc}"}, status_code=400)
    return Response(status_code=204)


def create_app(state: FakeVendorState) -> Starlette:
    """The fake vendors' ASGI app over `state`."""
    control: list[BaseRoute] = [
        Route("/_control/requests", _control_requests, methods=["GET", "DELETE"]),
        Route("/_control/faults", _control_faults, methods=["POST", "DELETE"]),
        Route("/_control/documents", _control_documents, methods=["POST"]),
        Route("/_control/tokens", _control_tokens, methods=["POST"]),
        Route("/_control/expire", _control_expire, methods=["POST"]),
    ]
    app = Starlette(routes=control + _vendor_routes())
    app.state.fake = state
    return app


def default_credentials() -> dict[str, tuple[str, str]]:
    """Obviously fake OAuth clients, one per vendor."""
    return {v: (f"test-only-{v}-client", f"test-only-{v}-secret") for v in VENDORS}


# The handle


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


if __name__ == "__main__":
    sys.exit(main())
