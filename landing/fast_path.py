"""The receiver's Starlette app, with its hot route dispatched directly.

`POST /webhooks/{vendor}` is nearly every request the receiver gets. Starlette sends each request
through its error middleware, our access log, its exception middleware, the router's path regexes
and an endpoint wrapper; measured, that stack cost about as much CPU as the handler itself. Here
that one route goes straight to the access log and the handler, with the same outcome: the same
path parameter, the same access log line, and on an unexpected error the same 500 answer (then
the error is raised on, as Starlette's error middleware does). Every other request, including a
webhook path with a trailing slash or another method, takes Starlette's full path.

The handler reads the request through a `Delivery`, not Starlette's `Request`: its headers are
one dict built once (Starlette's `Headers` scans the raw list on every lookup, and the handler
makes about ten), and an empty query string is not parsed.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

from starlette._utils import get_route_path
from starlette.applications import Starlette
from starlette.datastructures import QueryParams
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from landing import access_log

_PREFIX = "/webhooks/"
_NO_QUERY: Mapping[str, str] = QueryParams("")


class Delivery:
    """What the webhook handler reads of a request (path parameter, headers, query, body)."""

    __slots__ = ("headers", "receive", "scope")

    def __init__(self, scope: Scope, receive: Receive) -> None:
        self.scope = scope
        self.receive = receive
        # Names are lower case in ASGI; the first of repeated headers wins, as in Starlette.
        self.headers: Mapping[str, str] = {
            name.decode("latin-1"): value.decode("latin-1")
            for name, value in reversed(scope["headers"])
        }

    @classmethod
    def of(cls, request: Request) -> Delivery:
        """The delivery of a request that came through Starlette's router."""
        return cls(request.scope, request.receive)

    @property
    def path_params(self) -> dict[str, Any]:
        return self.scope["path_params"]  # type: ignore[no-any-return]

    @property
    def query_params(self) -> Mapping[str, str]:
        query = self.scope["query_string"]
        return QueryParams(query) if query else _NO_QUERY

    async def stream(self) -> AsyncIterator[bytes]:
        """The body's chunks as they arrive; ClientDisconnect when the client goes away."""
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                raise ClientDisconnect()
            chunk = message.get("body", b"")
            if chunk:
                yield chunk
            if not message.get("more_body", False):
                return


class WebhookApp(Starlette):
    """Starlette, with `POST /webhooks/{vendor}` served by `webhook` without the router."""

    def __init__(
        self,
        *,
        webhook: Callable[[Delivery], Awaitable[Response]],
        on_error: Callable[[Request, Exception], Awaitable[Response]],
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._webhook = webhook
        self._on_error = on_error

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            path = get_route_path(scope)
            if path.startswith(_PREFIX):
                vendor = path[len(_PREFIX) :]
                if vendor and "/" not in vendor:
                    scope["app"] = self
                    scope["path_params"] = {"vendor": vendor}
                    # The handler, with the access log of `AccessLogMiddleware` (the status is
                    # the response's: no wrapper around `send`).
                    started = time.perf_counter()
                    fields = access_log.start(scope)
                    try:
                        try:
                            response = await self._webhook(Delivery(scope, receive))
                        except Exception as exc:
                            response = await self._on_error(Request(scope, receive, send), exc)
                            fields["status"] = response.status_code
                            await response(scope, receive, send)
                            raise
                        fields["status"] = response.status_code
                        await response(scope, receive, send)
                    except BaseException:
                        fields["status"] = fields["status"] or 500
                        raise
                    finally:
                        access_log.finish(fields, started)
                    return
        await super().__call__(scope, receive, send)
