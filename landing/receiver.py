"""The webhook receiver: lands each body byte-for-byte and answers 202 only once it is stored.

Bad input gets a specific 4xx with a reason and lands nothing; a store failure gets 503 with
Retry-After. Responses and logs never carry bodies, secrets or stack traces. Each delivery is
authenticated by its vendor module (`verify`) before it is parsed; vendors' subscription
handshakes (GET, HEAD, Polar's PING) are answered by their `handshake` hook and land nothing.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime
from typing import Any, cast

import anyio
import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from landing.access_log import LOG_FIELDS, AccessLogMiddleware
from landing.fast_path import Delivery, WebhookApp
from landing.group_commit import GroupCommitter, store_writer
from landing.headers import kept_headers
from landing.keys import key_at
from landing.metrics import metrics_endpoint
from landing.open_routes import CREDENTIALS, open_routes, opted_out
from landing.openapi import openapi_schema
from landing.request_body import (
    BodyBudget,
    Rejection,
    body_format,
    parse_payload,
    read_body,
)
from landing.settings import Settings
from landing.store import ObjectStore, StoreError, open_store
from landing.token_registry import RevocationList
from landing.vendors import REGISTRY, Handshake, Vendor, Verification

logger = logging.getLogger("biobridge.receiver")
_BODY_READ = "biobridge.body_read"


def create_app(settings: Settings, store: ObjectStore | None = None) -> Starlette:
    """The receiver app over `store` (default: the store at `settings.landing_location()`)."""
    if store is None:
        store = open_store(settings.landing_location(), settings)
    receiver = _Receiver(settings, store)
    schema = orjson.dumps(openapi_schema())

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        yield
        receiver.close()  # the server has stopped: publish what this worker logged

    app = WebhookApp(  # Starlette, with POST /webhooks/{vendor} dispatched directly
        lifespan=lifespan,
        webhook=receiver.webhook,
        on_error=_internal_error,
        routes=[
            Route("/webhooks/{vendor}", receiver.routed_webhook, methods=["POST"]),
            Route("/webhooks/{vendor}", receiver.handshake, methods=["GET", "HEAD"]),
            Route("/healthz", _healthz, methods=["GET"]),
            Route("/readyz", receiver.readyz, methods=["GET"]),
            Route("/metrics", metrics_endpoint, methods=["GET"]),
            Route(
                "/openapi.json",
                lambda _: Response(schema, media_type="application/json"),
                methods=["GET"],
            ),
        ],
        middleware=[Middleware(AccessLogMiddleware)],
        exception_handlers={
            HTTPException: _http_error,
            Exception: _internal_error,
        },
    )
    app.state.store = store
    return app


class _Receiver:
    """The handlers that need the settings and the store."""

    def __init__(self, settings: Settings, store: ObjectStore) -> None:
        self.settings = settings
        self.store = store
        self.revocations = RevocationList(store, settings.token_revocation_refresh_s)
        self.open_routes = open_routes(settings)
        # The quick start (nothing configured) keeps /readyz as it was; the header always lists.
        configured = len(self.open_routes) < len(CREDENTIALS) or bool(opted_out(settings))
        self.readyz_extra = {"open_routes": self.open_routes} if configured else {}
        self.readyz_headers = {"Biobridge-Open-Routes": ",".join(self.open_routes) or "none"}
        self.put = store_writer(store, settings)  # group commit on a local store
        self.budget = BodyBudget(settings.max_buffered_body_bytes, settings.retry_after_s)

    def close(self) -> None:
        """The server has stopped: let the group committer publish what it logged."""
        committer = getattr(self.put, "__self__", None)
        if isinstance(committer, GroupCommitter):
            committer.close()

    async def routed_webhook(self, request: Request) -> Response:
        """The webhook as a Starlette endpoint (the fast path calls `webhook` directly)."""
        return await self.webhook(Delivery.of(request))

    async def webhook(self, request: Delivery) -> Response:
        """POST /webhooks/{vendor}: check, land, then acknowledge; a 4xx lands nothing."""
        log: dict[str, Any] = request.scope[LOG_FIELDS]
        try:
            return await self._land(request, log)
        except Rejection as exc:
            log["error"] = exc.error
            # A body left unread would be drained by the server first: close instead.
            headers = {} if request.scope.get(_BODY_READ) else {"Connection": "close"}
            headers.update(exc.headers)
            if exc.status == 503:
                headers.setdefault("Retry-After", str(self.settings.retry_after_s))
            status = "unavailable" if exc.status == 503 else "rejected"
            content = {"status": status, "error": exc.error, "detail": exc.detail, **exc.extra}
            return _json(exc.status, content, headers)
        finally:
            self.budget.release(request.scope)

    async def _land(self, request: Delivery, log: dict[str, Any]) -> Response:
        """Route, check, read and parse the body; store it with its metadata; acknowledge."""
        vendor = _vendor_of(request, log)
        fmt, media_type = body_format(request.headers, vendor.FORMATS)
        try:
            context = vendor.context(request.headers, request.query_params)
        except ValueError as exc:
            raise Rejection(400, "invalid_context", str(exc)) from None
        body = await self._read(request, log)
        reply = vendor.handshake("POST", request.query_params, request.headers, body, self.settings)
        if reply is not None:  # e.g. Polar's PING: answered, nothing lands
            return _handshake_reply(reply, head=False)
        check = vendor.verify(request.headers, body, self.settings)
        log["auth"] = check.scheme
        if not check.accepted or check.token_id is not None:
            context = await self._authorize(check, context)
        payload = parse_payload(body, fmt)

        received_at = datetime.now(UTC)
        at = received_at.isoformat(timespec="microseconds")
        rand = os.urandom(24).hex()  # one draw: the key's 16 hex digits and a uuid4's 32
        key = key_at(vendor.NAME, at, rand[:16], ext=fmt)
        vendor_id = vendor.delivery_id(request.headers, payload)
        del payload  # parsed documents are big (~20x the body): never hold one across an await
        delivery_id = vendor_id or _uuid4(rand[16:])
        fields: dict[str, object] = {  # the ObjectMeta but its body digest and size (the store
            "received_at": at,  # computes those)
            "vendor": vendor.NAME,
            "content_type": media_type,
            "delivery_id": delivery_id,
            "delivery_id_source": "vendor" if vendor_id else "receiver",
            "signature_verified": check.verified,
            "signature": check.scheme,
            "headers": kept_headers(request.headers, vendor.HEADERS),
            "context": context,
        }
        log["delivery_id"] = delivery_id
        try:
            await self.put(key, body, fields)
        except Exception as exc:  # noqa: BLE001 (whatever failed, the body is not stored: 503)
            self._put_failed(key, exc, log)
            return self._unavailable(
                "store_unavailable",
                "the body could not be stored; nothing was accepted: retry later",
            )
        late = (datetime.now(UTC) - received_at).total_seconds()
        if late > self.settings.ack_deadline_s:
            # Stored, but too late for the discovery window to be sure of seeing it: do not
            # acknowledge; the vendor's retry lands a fresh copy (loading is idempotent).
            log["error"] = "store_too_slow"
            return self._unavailable(
                "store_too_slow", f"the store took {late:.0f} s to confirm the write: retry later"
            )
        log["object_key"] = key
        return _Accepted(
            orjson.dumps(
                {
                    "status": "accepted",
                    "device_type": vendor.NAME,
                    "delivery_id": delivery_id,
                    "object_key": key,
                    "received_at": at,
                }
            )
        )

    async def _read(self, request: Delivery, log: dict[str, Any]) -> bytes:
        """The whole body, within the size cap and the body deadline."""
        body = await read_body(
            request,
            max_bytes=self.settings.max_body_bytes,
            timeout_s=self.settings.body_timeout_s,
            drain_max_bytes=self.settings.drain_max_bytes,
            budget=self.budget,
        )
        request.scope[_BODY_READ] = True
        log["bytes"] = len(body)
        return body

    @staticmethod
    def _put_failed(key: str, exc: Exception, log: dict[str, Any]) -> None:
        """Log a store failure (the request is answered 503)."""
        log["error"] = "store_unavailable"
        logger.warning(
            "%s",
            orjson.dumps({"event": "put_failed", "object_key": key, **_describe(exc)}).decode(),
            exc_info=None if isinstance(exc, StoreError) else exc,
        )

    def _unavailable(self, error: str, detail: str) -> Response:
        """A 503 with Retry-After: nothing was acknowledged, the vendor retries."""
        return _json(
            503,
            {"status": "unavailable", "error": error, "detail": detail},
            {"Retry-After": str(self.settings.retry_after_s)},
        )

    async def _authorize(self, check: Verification, context: dict[str, str]) -> dict[str, str]:
        """Raise the Rejection `check` calls for; a user token must be unrevoked and its user's.

        Returns the context with the token's user as `user_id`.
        """
        if not check.accepted:
            error = "forbidden" if check.status == 403 else "unauthenticated"
            raise Rejection(check.status, error, check.reason)
        if check.token_id is None or check.user_id is None:
            return context
        try:
            revoked = await self.revocations.is_revoked(check.token_id)
        except Exception as exc:  # noqa: BLE001 (unreadable revocations: refuse, never guess)
            logger.warning(
                "%s",
                orjson.dumps({"event": "revocations_unreadable", **_describe(exc)}).decode(),
            )
            raise Rejection(
                503,
                "store_unavailable",
                "the token revocation list could not be read: retry later",
            ) from None
        if revoked:
            raise Rejection(401, "unauthenticated", "this user token has been revoked")
        claimed = context.get("user_id")
        if claimed is not None and claimed != check.user_id:
            raise Rejection(
                403, "forbidden", "X-User-Id (or user_id) is not the user this token was issued to"
            )
        return {**context, "user_id": check.user_id}

    async def handshake(self, request: Request) -> Response:
        """GET/HEAD /webhooks/{vendor}: a vendor's subscription handshake; nothing lands."""
        vendor = REGISTRY.get(request.path_params["vendor"])
        reply = None
        if vendor is not None:
            request.scope[LOG_FIELDS]["vendor"] = vendor.NAME
            reply = vendor.handshake(
                request.method, request.query_params, request.headers, b"", self.settings
            )
        if reply is None:
            raise HTTPException(405, headers={"Allow": "POST"})
        if reply.status >= 400:
            request.scope[LOG_FIELDS]["error"] = "handshake_refused"
        return _handshake_reply(reply, head=request.method == "HEAD")

    async def readyz(self, request: Request) -> Response:
        """GET /readyz: 200 only when the store accepts a probe write, read and delete."""
        timeout = self.settings.probe_timeout_s
        try:
            with anyio.fail_after(timeout):
                await anyio.to_thread.run_sync(self.store.probe, abandon_on_cancel=True)
        except TimeoutError:
            reason = f"store probe timed out after {timeout:g} s"
        except StoreError as exc:
            reason = f"store probe failed: {type(exc).__name__}: {exc}"[:500]
        except Exception as exc:  # noqa: BLE001 (readiness reports any failure, never crashes)
            reason = f"store probe failed: {type(exc).__name__}"
        else:
            return _json(200, {"status": "ready", **self.readyz_extra}, self.readyz_headers)
        request.scope[LOG_FIELDS]["error"] = "store_unavailable"
        content = {"status": "unavailable", "reason": reason, **self.readyz_extra}
        return _json(503, content, self.readyz_headers)


def _vendor_of(request: Delivery, log: dict[str, Any]) -> Vendor:
    """The vendor module of the route; 404 for a vendor we have no route for."""
    vendor = REGISTRY.get(request.path_params["vendor"])
    if vendor is None:
        raise Rejection(
            404,
            "unknown_vendor",
            "no webhook route for that vendor",
            {"known_vendors": list(REGISTRY)},
        )
    log["vendor"] = vendor.NAME
    return vendor


async def _healthz(request: Request) -> Response:
    """GET /healthz: the process is up and serving."""
    return _json(200, {"status": "ok"})


async def _http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own 404 (no route) and 405 (wrong method), as JSON."""
    http = cast(HTTPException, exc)
    content = {"status": "rejected", "error": "http_error", "detail": http.detail}
    return _json(http.status_code, content, http.headers)


async def _internal_error(request: Request, exc: Exception) -> Response:
    logger.error(
        "%s", orjson.dumps({"event": "unexpected_error", **_describe(exc)}).decode(), exc_info=exc
    )
    content = {
        "status": "error",
        "error": "internal_error",
        "detail": "unexpected error; the body was not acknowledged: retry later",
    }
    return _json(500, content)


def _handshake_reply(reply: Handshake, *, head: bool) -> Response:
    if reply.content is None or head or reply.status == 204:
        return Response(status_code=reply.status)
    return _json(reply.status, reply.content)


def _describe(exc: BaseException) -> dict[str, str]:
    """Type and message of a store error; only the type for anything else (may hold internals)."""
    if isinstance(exc, StoreError):
        return {"error_type": type(exc).__name__, "message": str(exc)[:500]}
    return {"error_type": type(exc).__name__}


class _Accepted(Response):
    """The 202 of a landed webhook: `_json`'s answer without Starlette's header building."""

    media_type = "application/json"

    def __init__(self, body: bytes) -> None:
        self.status_code = 202
        self.background = None
        self.body = body
        self.raw_headers = [
            (b"content-length", b"%d" % len(body)),
            (b"content-type", b"application/json"),
        ]


def _uuid4(hex32: str) -> str:
    """`str(uuid.uuid4())` from 32 random hex digits (version 4, RFC 4122 variant)."""
    h = hex32
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:32]}"


def _json(
    status: int, content: dict[str, Any], headers: Mapping[str, str] | None = None
) -> Response:
    return Response(orjson.dumps(content), status, headers, media_type="application/json")
