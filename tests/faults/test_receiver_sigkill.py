"""Issue 4.4: the receiver process SIGKILLed under concurrent load. Every acknowledged body is
stored whole, nothing partial is visible, and an ingest loads exactly what landed."""

from __future__ import annotations

import hashlib
import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

import landing.commit_log as commit_log
from landing.local_store import LocalStore
from landing.store import StoreError
from tests.faults.helpers import (
    ROWS_PER_GENERIC_FILE,
    assert_accounted,
    receiver_child,
)
from tests.pipeline import Pipeline
from tests.test_ingest import generic_body

pytestmark = pytest.mark.slow

POSTS = 600
KILL_AFTER_ACKS = 150
THREADS = 16


@pytest.fixture
def receiver(pipeline: Pipeline) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """`biobridge receiver` as a child process, landing in the pipeline's folder, with its
    default acknowledgement (202 once the body is in the synced log)."""
    with receiver_child(
        BIOBRIDGE_LANDING_URL=pipeline.settings.landing_location(), BIOBRIDGE_ACK_VISIBLE="false"
    ) as child:
        yield child


def test_receiver_killed_under_load_acknowledged_bodies_are_whole_and_load_once(
    pipeline: Pipeline, receiver: tuple[subprocess.Popen[bytes], str]
) -> None:
    proc, url = receiver
    bodies = {f"rk_{i:04d}": generic_body(f"rk_{i:04d}") for i in range(POSTS)}
    todo = iter(list(bodies.items()))
    lock = threading.Lock()
    answers: dict[str, int | str] = {}
    acked = threading.Semaphore(0)

    def worker() -> None:
        with httpx.Client(base_url=url, timeout=10) as client:
            while True:
                with lock:
                    item = next(todo, None)
                if item is None:
                    return
                marker, body = item
                try:
                    r = client.post(
                        "/webhooks/oura",
                        content=body,
                        headers={"content-type": "application/json"},
                    )
                    answers[marker] = r.status_code
                    if r.status_code == 202:
                        assert r.json()["object_key"]
                        acked.release()
                except httpx.HTTPError as exc:
                    answers[marker] = type(exc).__name__

    threads = [threading.Thread(target=worker) for _ in range(THREADS)]
    for t in threads:
        t.start()
    for _ in range(KILL_AFTER_ACKS):
        assert acked.acquire(timeout=30), "the receiver stopped acknowledging before the kill"
    proc.send_signal(signal.SIGKILL)
    for t in threads:
        t.join(timeout=60)
    assert proc.wait(timeout=10) == -signal.SIGKILL

    # As in production, the receiver starts again: it publishes what its log holds first.
    root = Path(pipeline.settings.landing_location().removeprefix("file://"))
    backlog = commit_log.backlog(LocalStore(root))
    with receiver_child(
        BIOBRIDGE_LANDING_URL=pipeline.settings.landing_location(), BIOBRIDGE_ACK_VISIBLE="false"
    ):
        assert commit_log.backlog(LocalStore(root)).records == 0

    statuses = {a for a in answers.values() if isinstance(a, int)}
    assert statuses == {202}, statuses  # a local store does not fail: only 202 or no answer
    acknowledged = {m for m, a in answers.items() if a == 202}
    unanswered = {m for m, a in answers.items() if a != 202}
    assert len(acknowledged) >= KILL_AFTER_ACKS and unanswered, "the kill hit no request"

    store = pipeline.store
    landed: set[str] = set()
    for key in store.list_keys("raw/"):
        body, meta = store.get(key)  # listed means readable, with its metadata
        marker = orjson.loads(body)["user_id"]
        assert body == bodies[marker], key
        assert (meta.sha256, meta.size) == (hashlib.sha256(body).hexdigest(), len(body))
        landed.add(marker)
    assert acknowledged <= landed
    leftovers = [p.relative_to(root).as_posix() for p in root.rglob(".*.tmp")]
    for name in leftovers:  # a temp file of a write cut short is never readable as an object
        with pytest.raises(StoreError):
            store.get(name)
    print(
        f"acknowledged {len(acknowledged)}, landed {len(landed)}, unanswered "
        f"{len(unanswered)}, temp files left {len(leftovers)}, records logged but not yet "
        f"objects at the kill {backlog.records}"
    )

    state = pipeline.ingest()
    assert state.is_completed(), state.message
    users = {u for (u,) in pipeline.query("SELECT DISTINCT user_id FROM biometric_events")}
    assert users == landed
    assert (
        pipeline.scalar("SELECT count(*) FROM biometric_events")
        == len(landed) * ROWS_PER_GENERIC_FILE
    )
    assert_accounted(pipeline)
