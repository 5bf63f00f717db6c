"""The fake vendor API's routes (vendor paths and the /_control endpoints) as one Starlette app."""

from __future__ import annotations

from dataclasses import asdict

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from deployments.fake_vendor_api.data import (
    fitbit_day,
    fitbit_profile,
    oura_collection,
    oura_document,
    oura_personal_info,
    polar_document,
    polar_register,
    whoop_collection,
    whoop_cycle_child,
    whoop_profile,
    whoop_record,
    withings_measure,
)
from deployments.fake_vendor_api.oauth import (
    authorize_endpoint,
    token_endpoint,
)
from deployments.fake_vendor_api.plumbing import (
    Handler,
    vendor_endpoint,
)
from deployments.fake_vendor_api.state import (
    API_PATHS,
    AUTHORIZE_PATHS,
    TOKEN_PATHS,
    VENDORS,
    FakeVendorState,
    Fault,
    FaultKind,
)
from deployments.fake_vendor_api.subscriptions import (
    fitbit_subscription,
    fitbit_subscriptions,
    oura_subscriptions_endpoint,
)


def _vendor_routes() -> list[BaseRoute]:
    def route(
        vendor: str, path: str, handler: Handler, methods: tuple[str, ...] = ("GET",)
    ) -> Route:
        return Route(f"/{vendor}{path}", vendor_endpoint(vendor, handler), methods=list(methods))

    routes: list[BaseRoute] = []
    for vendor in VENDORS:
        routes.append(route(vendor, AUTHORIZE_PATHS[vendor], authorize_endpoint))
        routes.append(route(vendor, TOKEN_PATHS[vendor], token_endpoint, ("POST",)))
    w = API_PATHS["whoop"]
    routes += [
        route("oura", "/v2/usercollection/personal_info", oura_personal_info),
        route("oura", "/v2/usercollection/{data_type}/{object_id}", oura_document),
        route("oura", "/v2/usercollection/{data_type}", oura_collection),
        route("whoop", w + "/v2/user/profile/basic", whoop_profile),
        route("whoop", w + "/v2/cycle/{cycle_id}/{child:str}", whoop_cycle_child),
        route("whoop", w + "/v2/activity/sleep/{record_id}", _as("sleep", whoop_record)),
        route("whoop", w + "/v2/activity/workout/{record_id}", _as("workout", whoop_record)),
        route("whoop", w + "/v2/cycle/{record_id}", _as("cycle", whoop_record)),
        route("whoop", w + "/v2/activity/sleep", _as("sleep", whoop_collection)),
        route("whoop", w + "/v2/activity/workout", _as("workout", whoop_collection)),
        route("whoop", w + "/v2/cycle", _as("cycle", whoop_collection)),
        route("whoop", w + "/v2/recovery", _as("recovery", whoop_collection)),
        route(
            "fitbit",
            "/1/user/{user}/activities/heart/date/{date}/1d.json",
            _as("activities-heart", fitbit_day),
        ),
        route("fitbit", "/1/user/-/profile.json", fitbit_profile),
        route("fitbit", "/1/user/{user}/hrv/date/{date}.json", _as("hrv", fitbit_day)),
        route("fitbit", "/1/user/{user}/temp/skin/date/{date}.json", _as("temp_skin", fitbit_day)),
        route("fitbit", "/1/user/{user}/temp/core/date/{date}.json", _as("temp_core", fitbit_day)),
        route("withings", "/measure", withings_measure, ("GET", "POST")),
        route("polar", "/v3/exercises/{exercise_id}", polar_document),
        route("polar", "/v3/users/sleep/{date}", polar_document),
        route("polar", "/v3/users", polar_register, ("POST",)),
        route("oura", "/v2/webhook/subscription", oura_subscriptions_endpoint, ("GET", "POST")),
        route(
            "oura", "/v2/webhook/subscription/renew/{sub_id}", oura_subscriptions_endpoint, ("PUT",)
        ),
        route(
            "oura",
            "/v2/webhook/subscription/{sub_id}",
            oura_subscriptions_endpoint,
            ("GET", "DELETE"),
        ),
        route("fitbit", "/1/user/-/apiSubscriptions.json", fitbit_subscriptions),
        route("fitbit", "/1/user/-/{collection}/apiSubscriptions.json", fitbit_subscriptions),
        route(
            "fitbit",
            "/1/user/-/apiSubscriptions/{sub_id}.json",
            fitbit_subscription,
            ("POST", "DELETE"),
        ),
        route(
            "fitbit",
            "/1/user/-/{collection}/apiSubscriptions/{sub_id}.json",
            fitbit_subscription,
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
