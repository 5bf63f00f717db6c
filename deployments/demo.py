"""`biobridge demo`: post the vendor examples through HTTP, ingest once, show what landed."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from deployments.prefect_env import configure_prefect_env
from landing.settings import get_settings

EXAMPLES = Path(__file__).resolve().parent / "examples"
# What vendors really POST (fetched documents such as oura_sleep.json are not webhooks).
POSTED_RESOURCES = {"generic", "push", "ping", "hae", "webhook", "notification", "notify"}


def demo_requests() -> Iterator[tuple[str, bytes, dict[str, str]]]:
    """(route vendor, body, headers) for every example a vendor would post to us."""
    for expected_path in sorted(EXAMPLES.glob("*.expected.json")):
        expected = json.loads(expected_path.read_text())
        if expected["resource"] not in POSTED_RESOURCES:
            continue
        body = (EXAMPLES / expected["payload_file"]).read_bytes()
        form = expected["payload_file"].endswith(".txt")
        headers = {
            "content-type": "application/x-www-form-urlencoded" if form else "application/json"
        }
        if expected["vendor"] == "apple_health":
            headers["x-user-id"] = expected["context"]["user_id"]
        routes = (
            ["oura", "apple_health"] if expected["vendor"] == "generic" else [expected["vendor"]]
        )
        for route in routes:
            yield route, body, headers


@contextmanager
def temporary_receiver() -> Iterator[str]:
    """A receiver on a free local port, writing to the configured landing store."""
    import uvicorn

    from landing.receiver import create_app

    settings = get_settings()
    config = uvicorn.Config(
        create_app(settings), host="127.0.0.1", port=0, log_level="warning", lifespan="off"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        threading.Event().wait(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def post_examples(receiver_url: str) -> int:
    """Post every example; print each answer; return how many were accepted."""
    accepted = 0
    with httpx.Client(base_url=receiver_url, timeout=30) as client:
        for route, body, headers in demo_requests():
            resp = client.post(f"/webhooks/{route}", content=body, headers=headers)
            accepted += resp.status_code == 202
            where = resp.json().get("object_key") or resp.text
            print(f"POST /webhooks/{route:<13} {resp.status_code} {where}")
    return accepted


def run_demo(*, receiver_url: str | None) -> int:
    """Post, ingest, report. Exit code 1 if any post was refused or the ingest failed."""
    configure_prefect_env(get_settings().data_dir)
    if receiver_url:
        sent = sum(1 for _ in demo_requests())
        accepted = post_examples(receiver_url)
    else:
        with temporary_receiver() as url:
            sent = sum(1 for _ in demo_requests())
            accepted = post_examples(url)
    print(f"{accepted} of {sent} webhooks accepted")

    from deployments.run import run_ingest
    from landing.keys import VENDORS

    code = run_ingest(
        mode="scheduled",
        vendors=list(VENDORS),
        received_from=None,
        received_until=None,
        replay_states=["quarantined"],
        batch_files=2000,
        workers=2,
    )
    print_landed()
    return 1 if code or accepted != sent else 0


def print_landed() -> None:
    """Rows in Postgres per device type and metric."""
    from ops.api import rows_per_metric

    rows = rows_per_metric()
    print(f"\n{'device_type':<14}{'metric_type':<40}{'unit':<10}rows")
    for device, metric, unit, n in rows:
        print(f"{device:<14}{metric:<40}{unit or '':<10}{n}")
    print(f"{sum(r[3] for r in rows)} rows in public.biometric_events")
