"""Fake authorize and token endpoints: each vendor's client auth, code rules, rotation, errors."""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from deployments.fake_vendor_api.plumbing import (
    basic_credentials,
    oauth_error,
    read_form,
)
from deployments.fake_vendor_api.state import (
    CLIENT_AUTH,
    CODE_LIFETIME_S,
    FITBIT_REPLAY_WINDOW_S,
    WITHINGS_OLD_REFRESH_GRACE_S,
    Code,
    FakeVendorState,
)


async def authorize_endpoint(request: Request, state: FakeVendorState, vendor: str) -> Response:
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
        state.codes[code] = Code(
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
    basic = basic_credentials(request)
    if basic is not None:
        return "basic" in styles and basic == (client_id, secret)
    return "body" in styles and (form.get("client_id"), form.get("client_secret")) == (
        client_id,
        secret,
    )


async def token_endpoint(request: Request, state: FakeVendorState, vendor: str) -> Response:
    form = await read_form(request)
    if vendor == "withings" and form.get("action") != "requesttoken":
        return oauth_error(vendor, 400, "invalid_request", "action must be requesttoken")
    if not _client_ok(request, form, state, vendor):
        return oauth_error(vendor, 401, "invalid_client", "client authentication failed")
    grant_type = form.get("grant_type")
    with state.lock:
        if grant_type == "authorization_code":
            answer = _exchange(state, vendor, form)
        elif grant_type == "refresh_token" and vendor != "polar":
            answer = _rotate(state, vendor, str(form.get("refresh_token", "")))
        else:
            return oauth_error(vendor, 400, "unsupported_grant_type", "grant type not supported")
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
        return oauth_error(vendor, 400, "invalid_grant", "authorization code invalid or expired")
    if form.get("redirect_uri") != code.redirect_uri:
        return oauth_error(vendor, 400, "invalid_grant", "redirect_uri does not match")
    if code.challenge is not None:
        verifier = str(form.get("code_verifier", ""))
        digest = hashlib.sha256(verifier.encode()).digest()
        if base64.urlsafe_b64encode(digest).rstrip(b"=").decode() != code.challenge:
            return oauth_error(vendor, 400, "invalid_grant", "code_verifier does not match")
    return state.issue(vendor, code.user_id, code.scope)


def _rotate(state: FakeVendorState, vendor: str, token: str) -> dict[str, Any] | Response:
    entry = state.refresh.get(token)
    now = state.now()
    if entry is None or entry.grant.vendor != vendor or entry.grant.revoked:
        return oauth_error(
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
            return oauth_error(vendor, 400, "invalid_grant", "refresh token already used")
    if vendor == "whoop":  # the old access token dies with the old refresh token
        for access in state.access.values():
            if access.grant is entry.grant:
                access.valid = False
    answer = state._answer(entry.grant)
    entry.used_at, entry.answer, entry.successor = now, answer, answer["access_token"]
    return answer
