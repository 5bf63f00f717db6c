"""The object store interface: one contract, two backends (a local folder and S3).

`put` returns only once the body and its metadata are durable; an object becomes visible to
`list_keys` and `get` whole or not at all. The pipeline never rewrites or deletes raw bodies.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Protocol


class StoreError(Exception):
    """The store refused an operation for a reason that retrying will not fix."""


class StoreUnavailable(StoreError):
    """The store could not be reached or failed transiently: retry later (receiver: 503)."""


class ObjectNotFound(StoreError):
    """No object at that key."""


@dataclass(frozen=True)
class ObjectMeta:
    """What we know about a landed body besides its bytes; stored beside it, per object."""

    received_at: datetime
    vendor: str
    content_type: str
    sha256: str
    size: int
    delivery_id: str
    delivery_id_source: str  # "vendor" when the vendor sent one, else "receiver"
    signature_verified: bool
    headers: dict[str, str] = field(default_factory=dict)
    context: dict[str, str] = field(default_factory=dict)  # e.g. {"user_id": ...} from the route

    def to_json(self) -> bytes:
        """Serialise as compact JSON (ASCII only, so it also fits S3 user metadata)."""
        d: dict[str, Any] = asdict(self)
        d["received_at"] = self.received_at.isoformat()
        return json.dumps(d, sort_keys=True, ensure_ascii=True, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, raw: bytes | str) -> ObjectMeta:
        """Parse what `to_json` wrote."""
        d = json.loads(raw)
        d["received_at"] = datetime.fromisoformat(d["received_at"])
        return cls(**d)


class ObjectStore(Protocol):
    """Where raw webhook bodies land."""

    url: str  # where it points, safe to log (never credentials)

    def put(self, key: str, body: bytes, meta: ObjectMeta) -> None:
        """Store body and meta under key; durable when it returns. Raises StoreUnavailable."""
        ...

    def get(self, key: str) -> tuple[bytes, ObjectMeta]:
        """The exact bytes stored under key and their metadata. Raises ObjectNotFound."""
        ...

    def list_keys(self, prefix: str, *, start_after: str | None = None) -> Iterator[str]:
        """Keys of whole objects under prefix, in lexical order (metadata sidecars excluded)."""
        ...

    def delete(self, key: str) -> None:
        """Remove the object (used for probes and tests only)."""
        ...

    def probe(self) -> None:
        """Write, read back and delete a probe object; raise StoreError saying why not."""
        ...
