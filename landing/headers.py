"""Which request headers are kept in a landed object's metadata: an allow-list, bounded in size.

Never credentials or signatures: only allow-listed names are kept, and even those are dropped when
the name hints at a secret. Values are truncated and the total is capped so the metadata always
fits S3's 2 KB user-metadata limit.
"""

from __future__ import annotations

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
    for name in (*COMMON_HEADERS, *sorted(vendor_headers)):
        value = headers.get(name)
        if value is None or name in kept or any(hint in name for hint in SECRET_HINTS):
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
