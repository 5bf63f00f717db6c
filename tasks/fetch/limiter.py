"""Each vendor's documented rate limits, shared by every worker through Postgres.

A process worker starts a fresh process per flow run, and several workers fetch at once, so a
limit kept in process memory would let W workers send W times a vendor's rate. The moving
windows live in `biobridge.rate_limit_slots` instead (`warehouse/rate_limits.py`), keyed per
vendor and, for per-user limits, per user. A wait longer than `max_wait_s` is not slept: it
raises `RateLimited`, and the notification backs off like after a 429.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from tasks.vendor_http import RateLimited
from tasks.vendor_settings import FACTS
from warehouse.postgres import Connection
from warehouse.rate_limits import take_slot


class VendorRateLimiter:
    """Moving-window limits per vendor (and user, where the vendor counts per user)."""

    def __init__(self, conn: Connection, *, max_wait_s: float = 5.0) -> None:
        self._conn = conn  # its own connection: each check commits at once
        self.max_wait_s = max_wait_s

    def acquire(self, vendor: str, user: str | None, path: str) -> None:
        """Wait for a slot of every limit of `vendor`; RateLimited if that takes too long."""
        for limit in FACTS[vendor].rate_limits:
            who = (user or "-") if limit.scope == "user" else "app"
            bucket = f"{vendor}:{limit.scope}:{who}"
            while wait := take_slot(self._conn, bucket, requests=limit.requests, per_s=limit.per_s):
                if wait > self.max_wait_s:
                    raise RateLimited(vendor, path, None, wait)
                time.sleep(max(wait, 0.01))

    def hook(self, vendor: str, user: Callable[[], str | None]) -> Callable[[str], None]:
        """A `VendorClient(before_send=...)` callback for `vendor`; `user()` names the user."""
        return lambda path: self.acquire(vendor, user(), path)
