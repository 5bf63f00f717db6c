"""Fake webhook subscriptions: Oura's per app (with a callback challenge), Fitbit's per user."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from deployments.fake_vendor_api.plumbing import (
    not_found,
    user_of,
)
from deployments.fake_vendor_api.state import (
    OURA_SUBSCRIPTION_LIFETIME_S,
    FakeVendorState,
)


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")


async def oura_subscriptions_endpoint(
    request: Request, state: FakeVendorState, vendor: str
) -> Response:
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
            return not_found(vendor)
        if request.method == "DELETE" and sub_id is not None:
            del subs[sub_id]
            return Response(status_code=204)
        if request.method == "PUT" and sub_id is not None:  # renew
            subs[sub_id]["expiration_time"] = iso(state.now() + OURA_SUBSCRIPTION_LIFETIME_S)
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
        sub["expiration_time"] = iso(state.now() + OURA_SUBSCRIPTION_LIFETIME_S)
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


async def fitbit_subscription(request: Request, state: FakeVendorState, vendor: str) -> Response:
    user = user_of(request, state, vendor)
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
                return not_found(vendor)
            del state.fitbit_subscriptions[(user, sub_id)]
            return Response(status_code=204)
        if known is not None:
            return JSONResponse(known, status_code=200 if known == sub else 409)
        state.fitbit_subscriptions[(user, sub_id)] = sub
    return JSONResponse(sub, status_code=201)


async def fitbit_subscriptions(request: Request, state: FakeVendorState, vendor: str) -> Response:
    user = user_of(request, state, vendor)
    collection = request.path_params.get("collection")
    with state.lock:
        subs = [
            s
            for (owner, _), s in state.fitbit_subscriptions.items()
            if owner == user and collection in (None, s["collectionType"])
        ]
    return JSONResponse({"apiSubscriptions": subs})
