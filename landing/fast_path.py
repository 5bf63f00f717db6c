"""The receiver's Starlette app, with its hot route dispatched directly.

`POST /webhooks/{vendor}` is nearly every request the receiver gets. Starlette sends each request
through its error middleware, our access log, its exception middleware, the router's path regexes
and an endpoint wrapper; measured, that stack cost about as much CPU as the handler itself. Here
that one route goes straight to the access log and the handler, with the same outcome: the same
path parameter, the same access log line, and on an unexpected error the same 500 answer (then
the error is raised on, as Starlette's error middleware does). Every other request, including a
webhook path with a trailing slash or another method, takes Starlette's full path.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette._utils import get_route_path
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from landing.access_log import AccessLogMiddleware

_PREFIX = "/webhooks/"


class WebhookApp(Starlette):
    """Starlette, with `POST /webhooks/{vendor}` served by `webhook` without the router."""

    def __init__(
        self,
        *,
        webhook: Callable[[Request], Awaitable[Response]],
        on_error: Callable[[Request, Exception], Awaitable[Response]],
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._webhook = webhook
        self._on_error = on_error
        self._webhook_app = AccessLogMiddleware(self._serve_webhook)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            path = get_route_path(scope)
            if path.startswith(_PREFIX):
                vendor = path[len(_PREFIX) :]
                if vendor and "/" not in vendor:
                    scope["app"] = self
                    scope["path_params"] = {"vendor": vendor}
                    await self._webhook_app(scope, receive, send)
                    return
        await super().__call__(scope, receive, send)

    async def _serve_webhook(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive, send)
        try:
            response = await self._webhook(request)
        except Exception as exc:
            response = await self._on_error(request, exc)
            await response(scope, receive, send)
            raise
        await response(scope, receive, send)
