"""The receiver's Prometheus endpoint: webhook requests by vendor and status, landing latency
(issue 12, What to build 5), served by the receiver itself without the ETL side."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import EXAMPLES


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_metrics_count_webhooks_by_vendor_and_status_and_time_them(client: httpx.Client) -> None:
    before = samples(client.get("/metrics").text)
    body = (EXAMPLES / "generic_daily_readiness.json").read_bytes()
    headers = {"content-type": "application/json"}
    assert client.post("/webhooks/generic", content=body, headers=headers).status_code == 202
    assert client.post("/webhooks/generic", content=body, headers=headers).status_code == 202
    assert client.post("/webhooks/generic", content=b"{nope", headers=headers).status_code == 400
    assert client.post("/webhooks/nosuch", content=body, headers=headers).status_code == 404
    client.get("/healthz")  # not a webhook: not counted

    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    after = samples(response.text)

    def delta(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    requests = "biobridge_receiver_requests_total"
    assert delta(requests, vendor="generic", status="202") == 2
    assert delta(requests, vendor="generic", status="400") == 1
    assert delta(requests, vendor="unknown", status="404") == 1  # the path is never a label
    assert not any("nosuch" in str(key) or "healthz" in str(key) for key in after)
    latency = "biobridge_receiver_landing_seconds"
    assert delta(f"{latency}_count", vendor="generic") == 3
    assert delta(f"{latency}_sum", vendor="generic") > 0
    assert delta(f"{latency}_bucket", vendor="generic", le="+Inf") == 3
