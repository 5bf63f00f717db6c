"""Reading and checking a webhook body: format, size, deadline and syntax. Each refusal is a 4xx.

Checks run cheapest first; nothing here stores anything.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import anyio
import orjson
from starlette.requests import ClientDisconnect

from landing.fast_path import Delivery
from landing.vendors import Payload

JSON_TYPES = ("application/json", "application/*+json")
FORM_TYPE = "application/x-www-form-urlencoded"
_JSON_SUFFIX_RE = re.compile(r"^application/[a-z0-9][a-z0-9!#$&^_.-]{0,100}\+json$")
_CHARSETS = frozenset({"utf-8", "utf8", "us-ascii"})
_MAX_FORM_FIELDS = 1000
BODY_COMPLETE = "biobridge.body_complete"
"""Scope key the edge sets once the server holds a request's whole body (receive() won't wait)."""


@dataclass(eq=False)
class Rejection(Exception):
    """A request refused with a 4xx: `error` is a stable code, `detail` says what to fix."""

    status: int
    error: str
    detail: str
    extra: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.status} {self.error}: {self.detail}"


_FORMATS: dict[tuple[str | None, str | None, frozenset[str]], tuple[str, str]] = {}
_MAX_CACHED_FORMATS = 256  # distinct header values remembered (a client picks them: bounded)


def body_format(headers: Mapping[str, str], formats: frozenset[str]) -> tuple[str, str]:
    """(format, media type) of the request: format is "json" or "form". 415 when not accepted."""
    key = (headers.get("content-type"), headers.get("content-encoding"), formats)
    known = _FORMATS.get(key)
    if known is None:
        known = _body_format(headers, formats)
        if len(_FORMATS) < _MAX_CACHED_FORMATS:
            _FORMATS[key] = known
    return known


def _body_format(headers: Mapping[str, str], formats: frozenset[str]) -> tuple[str, str]:
    encoding = headers.get("content-encoding", "identity").strip().lower()
    if encoding != "identity":
        raise Rejection(
            415, "unsupported_content_encoding", "send the body uncompressed (no Content-Encoding)"
        )
    raw = headers.get("content-type")
    media, _, params = (raw or "application/json").partition(";")
    media = media.strip().lower()
    charset = _param(params, "charset")
    accepted = [
        *(JSON_TYPES if "json" in formats else ()),
        *((FORM_TYPE,) if "form" in formats else ()),
    ]
    if "json" in formats and (media == "application/json" or _JSON_SUFFIX_RE.match(media)):
        fmt = "json"
    elif media == FORM_TYPE and "form" in formats:
        fmt = "form"
    else:
        raise Rejection(
            415,
            "unsupported_media_type",
            "Content-Type must be one of the accepted types",
            {"accepted": accepted},
        )
    if charset is not None and charset not in _CHARSETS:
        raise Rejection(
            415, "unsupported_charset", "the body must be UTF-8", {"accepted": accepted}
        )
    return fmt, media


async def read_body(
    request: Delivery,
    *,
    max_bytes: int,
    timeout_s: float,
    drain_max_bytes: int = 0,
    budget: BodyBudget | None = None,
) -> bytes:
    """The whole body, refused when too large (413) or too slow (408).

    An oversize body is read and dropped (up to `drain_max_bytes`, within the deadline) before
    the 413, as nginx's lingering close does: a client that sends its whole body before reading
    (http.client, many SDKs) then reads the 413 instead of a broken pipe, and does not retry for
    ever. `budget` bounds the body bytes all requests hold at once (503 beyond it).
    """
    declared = request.headers.get("content-length")
    if declared is not None:
        if not (declared.isascii() and declared.isdigit()):
            raise Rejection(400, "bad_content_length", "Content-Length must be a whole number")
        if int(declared) > max_bytes:
            # A client waiting for "100 Continue" sends nothing: answer at once.
            if request.headers.get("expect", "").lower() != "100-continue":
                up_to = min(int(declared), drain_max_bytes)
                await _drain(request.stream(), 0, up_to, timeout_s)
            raise _too_large(max_bytes)
    if request.scope.get(BODY_COMPLETE):
        # The server has the whole body already (landing.edge marks it): one receive() that
        # cannot wait, so no deadline to arm.
        message = await request.receive()
        if message["type"] == "http.request" and not message.get("more_body", False):
            body: bytes = message.get("body", b"")
            if len(body) > max_bytes:
                raise _too_large(max_bytes)
            if not body:
                raise Rejection(400, "empty_body", "the body is empty: send the webhook payload")
            if budget is not None:
                budget.take(request.scope, len(body))
            return body
        if message["type"] == "http.disconnect":
            raise Rejection(400, "client_disconnected", "the client went away mid-body")
        raise RuntimeError("the server marked the body complete but it is not")  # never
    chunks: list[bytes] = []
    size = 0
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    try:
        async with asyncio.timeout(timeout_s):  # asyncio's own: anyio's costs more per request
            stream = request.stream()
            async for chunk in stream:
                size += len(chunk)
                if size > max_bytes:
                    chunks.clear()
                    await _drain(stream, size, drain_max_bytes, deadline - loop.time())
                    raise _too_large(max_bytes)
                if budget is not None and chunk:
                    budget.take(request.scope, len(chunk))
                chunks.append(chunk)
    except TimeoutError:
        raise Rejection(
            408, "body_timeout", f"the body did not arrive within {timeout_s:g} s"
        ) from None
    except ClientDisconnect:
        raise Rejection(400, "client_disconnected", "the client went away mid-body") from None
    if size == 0:
        raise Rejection(400, "empty_body", "the body is empty: send the webhook payload")
    return b"".join(chunks)


async def _drain(stream: AsyncIterator[bytes], read: int, up_to: int, timeout_s: float) -> None:
    """Read and drop the rest of the body while fewer than `up_to` bytes were read in all."""
    if read >= up_to or timeout_s <= 0:
        return
    with anyio.move_on_after(timeout_s):
        try:
            async for chunk in stream:
                read += len(chunk)
                if read >= up_to:
                    return
        except ClientDisconnect:
            return


class BodyBudget:
    """Body bytes held in memory by all requests of one process, with a ceiling (503 beyond)."""

    KEY = "biobridge.body_bytes"

    def __init__(self, max_bytes: int, retry_after_s: int) -> None:
        self.max_bytes = max_bytes
        self.retry_after_s = retry_after_s
        self.used = 0

    def take(self, scope: MutableMapping[str, Any], n: int) -> None:
        """Count `n` more bytes for this request, or refuse it with 503."""
        if self.used + n > self.max_bytes:
            raise Rejection(
                503,
                "too_many_bytes",
                "the receiver holds too many bodies: retry later",
                headers={"Retry-After": str(self.retry_after_s)},
            )
        self.used += n
        scope[self.KEY] = scope.get(self.KEY, 0) + n

    def release(self, scope: MutableMapping[str, Any]) -> None:
        """The request is done: its bytes no longer count."""
        self.used -= scope.pop(self.KEY, 0)


def parse_payload(body: bytes, fmt: str) -> Payload:
    """Parse a JSON object/array or a form; 400 with the parser's message and position."""
    if fmt == "form":
        return _parse_form(body)
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise Rejection(400, "invalid_json", _json_error(body, exc)) from None
    if not isinstance(payload, dict | list):
        raise Rejection(
            400,
            "invalid_json_shape",
            f"the JSON body must be an object or an array, found {type(payload).__name__}",
        )
    return payload


def _parse_form(body: bytes) -> dict[str, str]:
    try:
        text = body.decode("ascii")
        pairs = parse_qsl(text, keep_blank_values=True, max_num_fields=_MAX_FORM_FIELDS)
    except UnicodeDecodeError as exc:
        raise Rejection(
            400, "invalid_form", f"form bodies are percent-encoded ASCII: byte {exc.start} is not"
        ) from None
    except ValueError as exc:
        raise Rejection(400, "invalid_form", f"cannot parse the form body: {exc}") from None
    return dict(pairs)


def _json_error(body: bytes, exc: orjson.JSONDecodeError) -> str:
    if "UTF-8" in exc.msg:
        try:
            body.decode("utf-8")
        except UnicodeDecodeError as bad:
            return f"the body is not valid UTF-8: invalid byte at position {bad.start}"
    return f"invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno} (char {exc.pos})"


def _param(params: str, name: str) -> str | None:
    for item in params.split(";"):
        key, _, value = item.partition("=")
        if key.strip().lower() == name:
            return value.strip().strip('"').lower()
    return None


def _too_large(max_bytes: int) -> Rejection:
    return Rejection(
        413, "body_too_large", f"the body exceeds {max_bytes} bytes", {"max_bytes": max_bytes}
    )
