"""The receiver's HTTP edge: uvicorn's httptools protocol with the limits hostile clients need.

uvicorn leaves these to a proxy in front; the receiver may face vendors directly, so it enforces
them itself, per worker process, whatever the packet boundaries:

- a request head (request line and headers) must arrive within `head_timeout_s` of the
  connection (or of the previous response): a client dribbling its headers gets 408, an idle
  connection is closed (uvicorn arms no timer before the first request);
- the request target is at most `max_url_bytes` (else 414), the headers at most
  `max_header_bytes` in all and `max_headers` in number (else 431), checked as the bytes arrive;
- at most `max_connections` connections are served; one more is answered 503 with Retry-After
  and closed, so file descriptors stay below the process limit (no "Too many open files");
- at most `max_requests_in_flight` requests run at once; more are answered 503 with Retry-After.

Every refusal closes the connection after a lingering close: the write side is shut, what the
client still sends is read and dropped for up to `_LINGER_S`, so the client reads our answer
instead of a reset. Refusals are counted, not logged one by one (a flood must not fill the log).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import httptools
import orjson
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from landing.request_body import BODY_COMPLETE
from landing.settings import Settings

logger = logging.getLogger("biobridge.receiver")

_LOG_EVERY_S = 60.0
_INT_KEYS = orjson.OPT_NON_STR_KEYS
_LINGER_S = 2.0  # how long a refused connection is drained before it is closed
_MAX_LINGERING = 256  # refused connections drained at once; beyond that they are closed at once
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"  # what uvicorn writes for Expect: 100-continue
_REASONS = {
    408: b"Request Timeout",
    414: b"URI Too Long",
    431: b"Request Header Fields Too Large",
    503: b"Service Unavailable",
}


class EdgeLimits:
    """The limits of one worker process, with counters of what they refused."""

    def __init__(self, settings: Settings) -> None:
        self.head_timeout_s = settings.head_timeout_s
        self.max_url_bytes = settings.max_url_bytes
        self.max_header_bytes = settings.max_header_bytes
        self.max_headers = settings.max_headers
        self.max_connections = settings.max_connections
        self.max_in_flight = settings.max_requests_in_flight
        self.retry_after = str(settings.retry_after_s).encode()
        self.refused: dict[int, int] = {}  # by status; 0: idle connections closed
        self.lingering = 0
        self._logged_at = 0.0
        self._logged: dict[int, int] = {}

    def count(self, status: int) -> None:
        """Count a refusal; log the counts at most once a minute (a flood must not flood the
        log), as one line of what changed since the last."""
        self.refused[status] = self.refused.get(status, 0) + 1
        now = time.monotonic()
        if now - self._logged_at >= _LOG_EVERY_S:
            new = {k: v - self._logged.get(k, 0) for k, v in self.refused.items()}
            logger.warning(
                "%s",
                orjson.dumps(
                    {"event": "edge_refusals", "since_last": new}, option=_INT_KEYS
                ).decode(),
            )
            self._logged_at, self._logged = now, dict(self.refused)

    def answer(self, status: int, error: str, detail: str) -> bytes:
        """A complete JSON error response that closes the connection."""
        body = b'{"status":"%s","error":"%s","detail":"%s"}' % (
            b"unavailable" if status == 503 else b"rejected",
            error.encode(),
            detail.encode(),
        )
        extra = b"retry-after: " + self.retry_after + b"\r\n" if status == 503 else b""
        return (
            b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
            b"%sconnection: close\r\n\r\n%s" % (status, _REASONS[status], len(body), extra, body)
        )


class _OneWrite:
    """A response cycle's transport that sends the response head with the body's first bytes.

    uvicorn writes the head and the body apart: two `send` calls per response, and on this VM a
    syscall costs more than the rest of a small response. The cycle's first write is its head
    (or `100 Continue`, which goes out at once); the head is held until the next write, `close`
    or `write_eof`. A HEAD response writes no body: its cycle keeps the plain transport.
    Everything else is the connection's transport. (No reference back to the cycle: a reference
    cycle per request would leave the work to the garbage collector.)
    """

    __slots__ = ("_head", "_started", "_transport")

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._head: bytes | None = None
        self._started = False  # the head was written or is held

    def write(self, data: bytes) -> None:
        if not self._started:
            if data != _CONTINUE:
                self._started = True
                self._head = data
                return
        elif self._head is not None:
            data = self._head + data
            self._head = None
        self._transport.write(data)

    def _flush(self) -> None:
        if self._head is not None:
            self._transport.write(self._head)
            self._head = None

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def write_eof(self) -> None:
        self._flush()
        self._transport.write_eof()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class _Refused(Exception):
    def __init__(self, status: int, error: str, detail: str) -> None:
        super().__init__(error)
        self.status, self.error, self.detail = status, error, detail


def edge_protocol(limits: EdgeLimits) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol class bound to `limits` (pass it as `Config(http=...)`)."""

    class EdgeProtocol(_EdgeProtocol):
        _limits = limits

    return EdgeProtocol


class _EdgeProtocol(HttpToolsProtocol):
    _limits: EdgeLimits

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_bytes = 0  # bytes of the request head received so far
        self._awaiting_head = True
        self._header_bytes = 0
        self._header_count = 0
        self._refused = False

    # connection life

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        lim = self._limits
        if len(self.connections) > lim.max_connections:
            self._refuse(_Refused(503, "too_many_connections", "the receiver is busy: retry later"))
            return
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        if self._refused:
            self._refused = False
            self._limits.lingering -= 1
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # lingering: read and drop
        if self._awaiting_head:
            self._head_bytes += len(data)
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            if isinstance(cause, _Refused):
                self._refuse(cause)
            else:
                self._refuse(_Refused(400, "invalid_http", "invalid HTTP request"))
            return
        except httptools.HttpParserError:
            self._refuse(_Refused(400, "invalid_http", "invalid HTTP request"))
            return
        except httptools.HttpParserUpgrade:
            self._refuse(_Refused(400, "invalid_http", "protocol upgrades are not supported"))
            return
        lim = self._limits
        if self._awaiting_head and self._head_bytes > lim.max_url_bytes + lim.max_header_bytes:
            # A head still incomplete beyond both limits: one header or the target is too long.
            self._refuse(_Refused(431, "headers_too_large", "the request head is too large"))

    # parser callbacks

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._awaiting_head = True
        self._header_bytes = 0
        self._header_count = 0

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        if len(self.url) > self._limits.max_url_bytes:
            raise _Refused(
                414,
                "uri_too_long",
                f"the request target exceeds {self._limits.max_url_bytes} bytes",
            )

    def on_header(self, name: bytes, value: bytes) -> None:
        lim = self._limits
        self._header_bytes += len(name) + len(value) + 4
        self._header_count += 1
        if self._header_bytes > lim.max_header_bytes or self._header_count > lim.max_headers:
            raise _Refused(
                431,
                "headers_too_large",
                f"send at most {lim.max_headers} headers and {lim.max_header_bytes} bytes of them",
            )
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._awaiting_head = False
        self._cancel_head_timer()
        if len(self.tasks) >= self._limits.max_in_flight:
            app, self.app = self.app, self._busy
            try:
                super().on_headers_complete()
            finally:
                self.app = app
        else:
            super().on_headers_complete()
        cycle = self.cycle
        if cycle is not None and cycle.scope["method"] != "HEAD":
            cycle.transport = _OneWrite(self.transport)  # type: ignore[assignment]

    def on_message_complete(self) -> None:
        super().on_message_complete()
        cycle = self.cycle
        if cycle is not None and not cycle.more_body and not cycle.response_complete:
            cycle.scope[BODY_COMPLETE] = True  # type: ignore[literal-required]

    def on_response_complete(self) -> None:
        pipelined = bool(self.pipeline)  # a queued request starts now: its head is complete
        super().on_response_complete()
        if not pipelined and not self.transport.is_closing():
            self._awaiting_head = True
            self._head_bytes = 0
            self._arm_head_timer()

    # refusals

    async def _busy(self, scope: Any, receive: Any, send: Any) -> None:
        """The app for a request over the in-flight limit: 503 with Retry-After."""
        self._count(503)
        await send(
            {
                "type": "http.response.start",
                "status": 503,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"retry-after", self._limits.retry_after),
                    (b"connection", b"close"),
                ],
            }
        )
        await send(
            {
                "type": "http.response.body",
                "body": b'{"status":"unavailable","error":"too_many_requests",'
                b'"detail":"the receiver is busy: retry later"}',
            }
        )

    def _arm_head_timer(self) -> None:
        self._cancel_head_timer()
        self._head_timer = self.loop.call_later(self._limits.head_timeout_s, self._head_timeout)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timeout(self) -> None:
        self._head_timer = None
        if self.transport.is_closing():
            return
        if self._head_bytes == 0:  # idle: nothing to answer
            self._count(0)  # 0: idle connections closed
            self.transport.close()
            return
        secs = f"{self._limits.head_timeout_s:g}"
        self._refuse(_Refused(408, "head_timeout", f"the request head took over {secs} s"))

    def _refuse(self, why: _Refused) -> None:
        """Answer `why`, stop reading requests, and close after a bounded lingering drain."""
        self._cancel_head_timer()
        self._unset_keepalive_if_required()
        self._count(why.status)
        lim = self._limits
        status = why.status
        if status == 400:
            payload = (
                b'{"status":"rejected","error":"invalid_http","detail":"invalid HTTP request"}'
            )
            answer = (
                b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\n"
                b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(payload), payload)
            )
        else:
            answer = lim.answer(status, why.error, why.detail)
        transport = self.transport
        if transport.is_closing():
            return
        transport.write(answer)
        if lim.lingering >= _MAX_LINGERING or not transport.can_write_eof():
            transport.close()
            return
        self._refused = True
        lim.lingering += 1
        self.connections.discard(self)  # a lingering connection serves nothing
        transport.write_eof()
        self.loop.call_later(_LINGER_S, transport.close)

    def _count(self, status: int) -> None:
        self._limits.count(status)
