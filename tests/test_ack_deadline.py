"""A write confirmed later than the ack deadline is answered 503: discovery's window holds."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
from starlette.types import ASGIApp

from landing.receiver import create_app
from landing.settings import Settings
from landing.store import ObjectMeta, ObjectStore, open_store
from tests.helpers import EXAMPLES


class SlowStore:
    """The real local store, with each put taking `delay` seconds longer."""

    def __init__(self, inner: ObjectStore, delay: float) -> None:
        self.inner, self.delay, self.url = inner, delay, inner.url

    def put(self, key: str, body: bytes, meta: ObjectMeta) -> None:
        time.sleep(self.delay)
        self.inner.put(key, body, meta)

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


def test_late_confirmation_is_not_acknowledged(
    settings: Settings, serve: Callable[[ASGIApp], str]
) -> None:
    inner = open_store(settings.landing_location(), settings)
    late = settings.model_copy(update={"ack_deadline_s": 0.2})
    url = serve(create_app(late, SlowStore(inner, 0.5)))  # type: ignore[arg-type]
    body = (EXAMPLES / "generic_daily_readiness.json").read_bytes()
    resp = httpx.post(
        f"{url}/webhooks/oura", content=body, headers={"content-type": "application/json"}
    )
    assert resp.status_code == 503
    assert resp.json()["error"] == "store_too_slow"
    assert resp.headers["retry-after"] == str(settings.retry_after_s)

    in_time = settings.model_copy(update={"ack_deadline_s": 5.0})
    url = serve(create_app(in_time, SlowStore(inner, 0.05)))  # type: ignore[arg-type]
    assert (
        httpx.post(
            f"{url}/webhooks/oura", content=body, headers={"content-type": "application/json"}
        ).status_code
        == 202
    )
