"""Read stage: fetch landed objects in bounded batches and parse their bodies.

Reads go through the store's `get_many` (S3: concurrent GETs; a folder: read ahead); a body
that cannot be fetched or parsed becomes a whole-file issue, never an exception that would
sink the rest of the batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import orjson

from landing.store import ObjectMeta, ObjectNotFound, ObjectStore, StoreUnavailable

EXCERPT_CHARS = 200


@dataclass(frozen=True)
class LandedFile:
    """One landed object as the pipeline sees it: its bytes and what the receiver recorded."""

    key: str
    body: bytes
    meta: ObjectMeta


@dataclass(frozen=True)
class ParseFailure:
    """Why a whole file could not be turned into a payload."""

    field: str
    reason: str
    expected: str
    found: str


def excerpt(raw: bytes | str, limit: int = EXCERPT_CHARS) -> str:
    """A short, printable, NUL-free excerpt for quarantine rows and error messages."""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    text = text.replace("\x00", "\\u0000")
    return text if len(text) <= limit else text[:limit] + "..."


def fetch_objects(store: ObjectStore, keys: Sequence[str]) -> list[LandedFile]:
    """Fetch keys in order (`ObjectStore.get_many`). A missing object is a bug in the ledger:
    fail loudly.

    StoreUnavailable propagates so the caller's retry policy can back off and try again.
    """
    try:
        got = store.get_many(keys)
    except ObjectNotFound as exc:
        raise ObjectNotFound(f"in the ledger but not in the store: {exc}") from exc
    pairs = zip(keys, got, strict=True)
    return [LandedFile(key=key, body=body, meta=meta) for key, (body, meta) in pairs]


def parse_body(file: LandedFile) -> Any | ParseFailure:
    """The payload of a landed body: JSON for every vendor, form fields for Withings."""
    if file.key.endswith(".form"):
        try:
            return dict(
                parse_qsl(file.body.decode("utf-8"), keep_blank_values=True, strict_parsing=True)
            )
        except (UnicodeDecodeError, ValueError) as exc:
            return ParseFailure(
                field="<body>",
                reason=f"{file.key}: form body does not parse ({exc}); kept in the store as sent",
                expected="application/x-www-form-urlencoded",
                found=excerpt(file.body),
            )
    try:
        return orjson.loads(file.body)
    except orjson.JSONDecodeError as exc:
        return ParseFailure(
            field="<body>",
            reason=f"{file.key}: body is not valid JSON ({exc}); kept in the store as sent",
            expected="a JSON document",
            found=excerpt(file.body),
        )


__all__ = [
    "LandedFile",
    "ParseFailure",
    "StoreUnavailable",
    "excerpt",
    "fetch_objects",
    "parse_body",
]
