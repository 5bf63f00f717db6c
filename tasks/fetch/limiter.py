"""Each vendor's documented rate limits, enforced with the `limits` library (moving windows).

Why not Prefect's global concurrency/rate limits: they are server-side objects (created through
the API, with slot decay) that the ephemeral test harness and a plain `biobridge ingest` do not
have configured; `limits` works in-process with no setup. The limiter is per process (one
`biobridge up` runner fetches at a time), keyed per vendor and, for per-user limits, per user.
A wait longer than `max_wait_s` is not slept: it raises `RateLimited`, and the notification
backs off like after a 429.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from limits import RateLimitItemPerSecond
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from tasks.vendor_http import RateLimited
from tasks.vendor_settings import FACTS


class VendorRateLimiter:
    """Moving-window limits per vendor (and user, where the vendor counts per user)."""

    def __init__(self, *, max_wait_s: float = 5.0) -> None:
        self._limiter = MovingWindowRateLimiter(MemoryStorage())
        self.max_wait_s = max_wait_s

    def acquire(self, vendor: str, user: str | None, path: str) -> None:
        """Wait for a slot of every limit of `vendor`; RateLimited if that takes too long."""
        for limit in FACTS[vendor].rate_limits:
            item = RateLimitItemPerSecond(limit.requests, limit.per_s)
            ids = (vendor, limit.scope, (user or "-") if limit.scope == "user" else "app")
            while not self._limiter.hit(item, *ids):
                wait = self._limiter.get_window_stats(item, *ids).reset_time - time.time()
                if wait > self.max_wait_s:
                    raise RateLimited(vendor, path, None, wait)
                time.sleep(max(wait, 0.01))

    def hook(self, vendor: str, user: Callable[[], str | None]) -> Callable[[str], None]:
        """A `VendorClient(before_send=...)` callback for `vendor`; `user()` names the user."""
        return lambda path: self.acquire(vendor, user(), path)


LIMITER = VendorRateLimiter()
"""The process's limiter: limits hold across runs of one process."""
