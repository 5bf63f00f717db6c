"""The fake data routes: each vendor's real paths and pagination over the seeded documents."""

from __future__ import annotations

import base64
import json
from datetime import datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from deployments.fake_vendor_api.plumbing import (
    not_found,
    read_form,
    user_of,
)
from deployments.fake_vendor_api.state import (
    FITBIT_LIST_KEYS,
    Doc,
    FakeVendorState,
    unit_system,
)


def docs_of(state: FakeVendorState, vendor: str, resource: str, user: str) -> dict[str, Doc]:
    with state.lock:
        return dict(state.docs.get((vendor, resource, user), {}))


def page_of(items: list[Any], cursor: str | None, size: int) -> tuple[list[Any], str | None]:
    start = int(base64.urlsafe_b64decode(cursor.encode()).decode()) if cursor else 0
    end = start + size
    following = base64.urlsafe_b64encode(str(end).encode()).decode() if end < len(items) else None
    return items[start:end], following


def instant(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


async def oura_document(request: Request, state: FakeVendorState, vendor: str) -> Response:
    user = user_of(request, state, vendor)
    data_type = request.path_params["data_type"]
    if data_type in ("heartrate", "vo2_max"):  # no single-document route; REST says vO2_max
        return not_found(vendor)
    resource = "vo2_max" if data_type == "vO2_max" else data_type
    doc = docs_of(state, vendor, resource, user).get(request.path_params["object_id"])
    return JSONResponse(doc.body) if doc else not_found(vendor)


async def oura_collection(request: Request, state: FakeVendorState, vendor: str) -> Response:
    user = user_of(request, state, vendor)
    data_type = request.path_params["data_type"]
    resource = "vo2_max" if data_type == "vO2_max" else data_type
    q = request.query_params
    docs = sorted(docs_of(state, vendor, resource, user).values(), key=lambda d: d.stamp)
    try:
        if resource == "heartrate":
            lo = instant(q["start_datetime"]) if "start_datetime" in q else float("-inf")
            hi = instant(q["end_datetime"]) if "end_datetime" in q else float("inf")
            docs = [d for d in docs if lo <= instant(d.stamp) <= hi]
        else:
            lo_day, hi_day = q.get("start_date", ""), q.get("end_date", "9999-12-31")
            docs = [d for d in docs if lo_day <= d.stamp[:10] <= hi_day]
        items, following = page_of([d.body for d in docs], q.get("next_token"), state.page_size)
    except (ValueError, KeyError):
        return JSONResponse({"detail": "invalid parameters"}, status_code=422)
    return JSONResponse({"data": items, "next_token": following})


async def whoop_record(request: Request, state: FakeVendorState, vendor: str) -> Response:
    user = user_of(request, state, vendor)
    resource = request.path_params["resource"]
    doc = docs_of(state, vendor, resource, user).get(str(request.path_params["record_id"]))
    return JSONResponse(doc.body) if doc else not_found(vendor)


async def whoop_cycle_child(request: Request, state: FakeVendorState, vendor: str) -> Response:
    user = user_of(request, state, vendor)
    cycle_id = str(request.path_params["cycle_id"])
    if request.path_params["child"] == "recovery":
        doc = docs_of(state, vendor, "recovery", user).get(cycle_id)
    else:
        sleeps = docs_of(state, vendor, "sleep", user).values()
        doc = next((d for d in sleeps if str(d.body.get("cycle_id")) == cycle_id), None)
    return JSONResponse(doc.body) if doc else not_found(vendor)


async def whoop_collection(request: Request, state: FakeVendorState, vendor: str) -> Response:
    user = user_of(request, state, vendor)
    resource = request.path_params["resource"]
    q = request.query_params
    try:
        limit = int(q.get("limit", "10"))
        lo = instant(q["start"]) if "start" in q else float("-inf")
        hi = instant(q["end"]) if "end" in q else float("inf")
    except ValueError:
        return JSONResponse({"error": "invalid parameters"}, status_code=400)
    if not 1 <= limit <= 25:
        return JSONResponse({"error": "limit must be between 1 and 25"}, status_code=400)
    docs = sorted(docs_of(state, vendor, resource, user).values(), key=lambda d: instant(d.stamp))
    docs = [d for d in reversed(docs) if lo <= instant(d.stamp) < hi]  # newest first
    items, following = page_of(
        [d.body for d in docs], q.get("nextToken"), min(limit, state.page_size)
    )
    answer: dict[str, Any] = {"records": items}
    if following:
        answer["next_token"] = following
    return JSONResponse(answer)


async def whoop_profile(request: Request, state: FakeVendorState, vendor: str) -> Response:
    user = user_of(request, state, vendor)
    return JSONResponse(
        {
            "user_id": int(user) if user.isdigit() else user,
            "email": "someone@example.invalid",
            "first_name": "Test",
            "last_name": "User",
        }
    )


async def oura_personal_info(request: Request, state: FakeVendorState, vendor: str) -> Response:
    """`GET /v2/usercollection/personal_info`: who the token belongs to."""
    return JSONResponse({"id": user_of(request, state, vendor), "age": 35})


async def fitbit_profile(request: Request, state: FakeVendorState, vendor: str) -> Response:
    """`GET /1/user/-/profile.json`: the user's id and UTC offset (milliseconds)."""
    user = user_of(request, state, vendor)
    with state.lock:
        offset = state.utc_offsets_ms.get(user, 0)
    return JSONResponse({"user": {"encodedId": user, "offsetFromUTCMillis": offset}})


async def fitbit_day(request: Request, state: FakeVendorState, vendor: str) -> Response:
    user = user_of(request, state, vendor)
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
    units = unit_system(request.headers.get("accept-language"))
    doc = docs_of(state, vendor, resource, user).get(f"{date}|{units}")
    if doc is None:  # Fitbit answers an empty list for a day without data
        return JSONResponse({FITBIT_LIST_KEYS[resource]: []})
    return JSONResponse(doc.body)


async def withings_measure(request: Request, state: FakeVendorState, vendor: str) -> Response:
    user = user_of(request, state, vendor)
    params = {**request.query_params, **(await read_form(request))}
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
        docs_of(state, vendor, "measuregrp", user).values(), key=lambda d: int(d.stamp)
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


async def polar_document(request: Request, state: FakeVendorState, vendor: str) -> Response:
    user = user_of(request, state, vendor)
    resource = "sleep" if "date" in request.path_params else "exercise"
    key = request.path_params.get("date") or request.path_params["exercise_id"]
    doc = docs_of(state, vendor, resource, user).get(str(key))
    return JSONResponse(doc.body) if doc else not_found(vendor)


async def polar_register(request: Request, state: FakeVendorState, vendor: str) -> Response:
    user = user_of(request, state, vendor)
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
