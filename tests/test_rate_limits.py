"""Vendor rate limits hold across processes (issue 14, item 3): the windows live in Postgres.

Two limiters on two connections stand for two workers' flow-run processes.
"""

from __future__ import annotations

import time

import pytest

from tasks.fetch.limiter import VendorRateLimiter
from tasks.vendor_http import RateLimited
from tasks.vendor_settings import FACTS
from warehouse.postgres import connect
from warehouse.rate_limits import take_slot


def test_two_workers_share_a_vendors_app_limit(pg_url: str) -> None:
    [limit] = [x for x in FACTS["withings"].rate_limits if x.scope == "app"]
    with connect(pg_url) as a, connect(pg_url) as b:
        first, second = VendorRateLimiter(a, max_wait_s=0.1), VendorRateLimiter(b, max_wait_s=0.1)
        for i in range(limit.requests):
            (first if i % 2 else second).acquire("withings", None, "/measure")
        with pytest.raises(RateLimited):
            first.acquire("withings", None, "/measure")
        with pytest.raises(RateLimited):
            second.acquire("withings", None, "/measure")


def test_per_user_limits_are_per_user_across_workers(pg_url: str) -> None:
    [limit] = FACTS["fitbit"].rate_limits
    assert limit.scope == "user"
    with connect(pg_url) as a, connect(pg_url) as b:
        first, second = VendorRateLimiter(a, max_wait_s=0.1), VendorRateLimiter(b, max_wait_s=0.1)
        for _ in range(limit.requests):
            first.acquire("fitbit", "u1", "/1/user/-/hrv")
        with pytest.raises(RateLimited):
            second.acquire("fitbit", "u1", "/1/user/-/hrv")
        second.acquire("fitbit", "u2", "/1/user/-/hrv")


def test_the_window_moves(pg_url: str) -> None:
    with connect(pg_url) as conn:
        assert take_slot(conn, "t:app:app", requests=2, per_s=0.5) == 0
        assert take_slot(conn, "t:app:app", requests=2, per_s=0.5) == 0
        wait = take_slot(conn, "t:app:app", requests=2, per_s=0.5)
        assert 0 < wait <= 0.5
        time.sleep(wait + 0.05)
        assert take_slot(conn, "t:app:app", requests=2, per_s=0.5) == 0
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM biobridge.rate_limit_slots")
            assert cur.fetchone() == (2,)  # bounded: one row per slot, reused
