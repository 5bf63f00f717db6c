"""Shared by every vendor route: vendor-shaped errors, bearer checks, faults, the request log."""

from __future__ import annotations

import asyncio
import base64
import fnmatch
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from deployments.fake_vendor_api.state import (
    CREDENTIAL_FIELDS,
    REDACTED,
    FakeVendorState,
    Fault,
    FaultKind,
    RecordedRequest,
)


def oauth_error(vendor: str, status: int, error: str, description: str) -> Response:
    if vendor == "fitbit":
        body: dict[str, Any] = {
            "errors": [{"errorType": error, "message": description}],
            "success": False,
        }
        return JSONResponse(body, status_code=status)
    if vendor == "withings":  # HTTP 200, status in the body; bad code or grant is 503
        return JSONResponse({"status": 503, "body": {}, "error": f"Invalid Params: {description}"})
    return JSONResponse({"error": error, "error_description": description}, status_code=status)


def unauthorized(vendor: str, *, expired: bool) -> Response:
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


def not_found(vendor: str) -> Response:
    if vendor == "fitbit":
        body = {
            "errors": [{"errorType": "not_found", "message": "Resource not found"}],
            "success": False,
        }
        return JSONResponse(body, status_code=404)
    if vendor == "polar":
        return Response(status_code=404)
    return JSONResponse({"detail": "Not Found"}, status_code=404)


def rate_limited(vendor: str, retry_after_s: int) -> Response:
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


class Reject(Exception):
    def __init__(self, response: Response) -> None:
        self.response = response


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def basic_credentials(request: Request) -> tuple[str, str] | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, _, password = base64.b64decode(value.strip()).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return None
    return user, password


async def read_form(request: Request) -> dict[str, str]:
    """A urlencoded form body as {field: last value} (no multipart needed by any vendor)."""
    if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        return {}
    return dict(
        parse_qsl((await request.body()).decode("utf-8", "replace"), keep_blank_values=True)
    )


def user_of(request: Request, state: FakeVendorState, vendor: str) -> str:
    """The user of the bearer token, or a vendor-shaped 401."""
    token = bearer_token(request)
    with state.lock:
        entry = state.access.get(token) if token else None
        if entry is None or entry.grant.vendor != vendor:
            raise Reject(unauthorized(vendor, expired=False))
        if not entry.valid or entry.grant.revoked or entry.expires_at <= state.now():
            raise Reject(unauthorized(vendor, expired=True))
        entry.used = True
        return entry.grant.user_id


def recorded_params(query: Mapping[str, str], form: Mapping[str, Any]) -> dict[str, str]:
    merged = {**query, **{k: str(v) for k, v in form.items()}}
    return {k: (REDACTED if k in CREDENTIAL_FIELDS else v) for k, v in merged.items()}


def take_fault(state: FakeVendorState, vendor: str, path: str) -> Fault | None:
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


def apply_fault(
    fault: Fault, request: Request, state: FakeVendorState, vendor: str
) -> Response | None:
    if fault.kind is FaultKind.RATE_LIMIT:
        return rate_limited(vendor, fault.retry_after_s)
    if fault.kind is FaultKind.SERVER_ERROR:
        return Response("fake vendor: injected server error", status_code=500)
    if fault.kind is FaultKind.NOT_FOUND:
        return not_found(vendor)
    if fault.kind in (FaultKind.TOKEN_EXPIRED, FaultKind.GRANT_REVOKED):
        token = bearer_token(request)
        with state.lock:
            entry = state.access.get(token) if token else None
            if entry is not None:
                entry.valid = False
                if fault.kind is FaultKind.GRANT_REVOKED:
                    entry.grant.revoked = True
        return unauthorized(vendor, expired=True)
    return None  # SLOW: the delay was served, answer normally


def vendor_endpoint(vendor: str, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """Wrap a vendor handler: faults first, then the handler, and record the request."""

    async def endpoint(request: Request) -> Response:
        state: FakeVendorState = request.app.state.fake
        path = request.url.path[len(vendor) + 1 :] or "/"
        form = await read_form(request)
        fault = take_fault(state, vendor, path)
        response: Response | None = None
        if fault is not None:
            if fault.kind is FaultKind.SLOW:
                await asyncio.sleep(fault.delay_s)
            response = apply_fault(fault, request, state, vendor)
        if response is None:
            try:
                response = await handler(request, state, vendor)
            except Reject as reject:
                response = reject.response
        record = RecordedRequest(
            vendor=vendor,
            method=request.method,
            path=path,
            params=recorded_params(request.query_params, form),
            has_bearer=bearer_token(request) is not None,
            has_basic=basic_credentials(request) is not None,
            accept_language=request.headers.get("accept-language"),
            status=response.status_code,
            fault=fault.kind.value if fault else None,
        )
        with state.lock:
            state.requests.append(record)
        return response

    return endpoint
