"""Which request headers are kept in a landed object's metadata: an allow-list, bounded in size.

Never credentials or signatures: only allow-listed names are kept, and even those are dropped when
the name hints at a secret. Values are truncated and the total is capped so the metadata always
fits S3's 2 KB user-metadata limit.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Mapping

COMMON_HEADERS: tuple[str, ...] = ("content-type", "content-length", "user-agent", "x-request-id")
SECRET_HINTS: tuple[str, ...] = ("secret", "token", "key", "auth", "password", "cookie", "session")
MAX_VALUE_CHARS = 200
MAX_HEADERS_JSON_BYTES = 1024


def kept_headers(headers: Mapping[str, str], vendor_headers: Iterable[str]) -> dict[str, str]:
    """The allow-listed headers present in `headers`, each value truncated, the total bounded."""
    kept: dict[str, str] = {}
    budget = MAX_HEADERS_JSON_BYTES
    if not isinstance(vendor_headers, frozenset):
        vendor_headers = frozenset(vendor_headers)
    for name, plain_name in _names(vendor_headers):
        value = headers.get(name)
        if value is None:
            continue
        value = value[:MAX_VALUE_CHARS]
        if plain_name and _plain(value):  # nothing to escape: no json.dumps
            cost = len(name) + len(value) + 8  # {"name": "value"}
        else:
            cost = len(json.dumps({name: value}, ensure_ascii=True))
        if cost > budget:
            continue
        kept[name] = value
        budget -= cost
    return kept


@functools.cache
def _names(vendor_headers: frozenset[str]) -> tuple[tuple[str, bool], ...]:
    """The names to keep, in order, without repeats and without any that hints at a secret;
    each with whether it is JSON as is. (Vendors pass the same frozenset every time.)"""
    names = dict.fromkeys((*COMMON_HEADERS, *sorted(vendor_headers)))
    return tuple((n, _plain(n)) for n in names if not any(hint in n for hint in SECRET_HINTS))


def _plain(value: str) -> bool:
    """Printable ASCII but '"' and '\\': JSON as is."""
    return value.isascii() and value.isprintable() and '"' not in value and "\\" not in value
