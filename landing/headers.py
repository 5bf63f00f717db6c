"""Which request headers are kept in a landed object's metadata: an allow-list, bounded in size.

Never credentials or signatures: only allow-listed names are kept, and even those are dropped when
the name hints at a secret. Values are truncated and the total is capped so the metadata always
fits S3's 2 KB user-metadata limit.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable, Mapping

COMMON_HEADERS: tuple[str, ...] = ("content-type", "content-length", "user-agent", "x-request-id")
SECRET_HINTS: tuple[str, ...] = ("secret", "token", "key", "auth", "password", "cookie", "session")
MAX_VALUE_CHARS = 200
_PLAIN = re.compile(r"[ !#-\[\]-~]*\Z")  # printable ASCII but '"' and '\\': JSON as is
MAX_HEADERS_JSON_BYTES = 1024


def kept_headers(headers: Mapping[str, str], vendor_headers: Iterable[str]) -> dict[str, str]:
    """The allow-listed headers present in `headers`, each value truncated, the total bounded."""
    kept: dict[str, str] = {}
    budget = MAX_HEADERS_JSON_BYTES
    for name in _names(frozenset(vendor_headers)):
        value = headers.get(name)
        if value is None:
            continue
        value = value[:MAX_VALUE_CHARS]
        if _PLAIN.match(value) and _PLAIN.match(name):  # nothing to escape: no json.dumps
            cost = len(name) + len(value) + 8  # {"name": "value"}
        else:
            cost = len(json.dumps({name: value}, ensure_ascii=True))
        if cost > budget:
            continue
        kept[name] = value
        budget -= cost
    return kept


@functools.cache
def _names(vendor_headers: frozenset[str]) -> tuple[str, ...]:
    """The names to keep, in order, without repeats and without any that hints at a secret."""
    names = dict.fromkeys((*COMMON_HEADERS, *sorted(vendor_headers)))
    return tuple(n for n in names if not any(hint in n for hint in SECRET_HINTS))
