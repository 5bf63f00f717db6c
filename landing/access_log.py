"""One structured (JSON) log line per HTTP request: what came in, what we answered, how long.

Handlers add fields (vendor, object_key, delivery_id, error) to the dict at `scope[LOG_FIELDS]`.
Bodies, query strings and headers are never logged.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from landing.metrics import observe

LOG_FIELDS = "biobridge.log"
logger = logging.getLogger("biobridge.receiver")


class AccessLogMiddleware:
    """Pure ASGI middleware: logs after the response is sent (or the app failed)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        fields = start(scope)

        async def send_and_note(message: Message) -> None:
            if message["type"] == "http.response.start":
                fields["status"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        except BaseException:
            fields["status"] = fields["status"] or 500
            raise
        finally:
            finish(fields, started)


def start(scope: Scope) -> dict[str, Any]:
    """The log fields of a request, at `scope[LOG_FIELDS]` for the handlers to fill in."""
    fields: dict[str, Any] = {
        "method": scope["method"],
        "path": scope["path"][:200],
        "vendor": None,
        "status": None,
        "bytes": 0,
        "object_key": None,
        "delivery_id": None,
    }
    scope[LOG_FIELDS] = fields
    return fields


def finish(fields: dict[str, Any], started: float) -> None:
    """Count the request (GET /metrics) and log its line."""
    fields["duration_ms"] = round((time.perf_counter() - started) * 1000, 2)
    observe(fields)  # the Prometheus counters of GET /metrics
    status = fields["status"] or 0
    level = logging.ERROR if status >= 500 else logging.WARNING if status >= 400 else logging.INFO
    if logger.isEnabledFor(level):
        logger.log(level, "%s", orjson.dumps(fields).decode())
