"""The fetch stage when the vendor misbehaves: 429, 500, 401 with a good and a bad refresh, 404.

Each ends in its documented state (biobridge.notifications, migration 0005), shown in the run's
artifact; nothing is lost: once the vendor behaves (and the user reconnects), a later run loads
what became available. No token ever appears in a log line, a Prefect parameter or an artifact.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import pytest

from deployments.fake_vendor_api import EXAMPLES, FaultKind
from ops.verify import verify
from tasks.runtime import landing_store
from tests import fetch_fixtures
from tests.fetch_fixtures import FetchSetup, example, oura_event, token_strings, whoop_event
from warehouse.postgres import connect

fetch_setup = fetch_fixtures.fetch_setup

USERS = {"oura": "alice", "whoop": "bob", "fitbit": "carol", "withings": "dave", "polar": "erin"}


def states(s: FetchSetup) -> dict[str, str]:
    """Each notification's state, by vendor and what it points at."""
    rows = s.pipeline.query("SELECT object_key, state FROM biobridge.notifications")
    return {key.split("/")[1] + ":" + key[-21:]: state for key, state in rows}


def by_state(s: FetchSetup) -> dict[str, int]:
    return dict(s.pipeline.query("SELECT state, count(*) FROM biobridge.notifications GROUP BY 1"))


def summary_artifact(flow_run_id: Any) -> dict[str, Any]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        arts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    table = next(a for a in arts if a.key == "ingest-summary")
    rows = json.loads(table.data) if isinstance(table.data, str) else table.data
    return {r["measure"]: r["value"] for r in rows}


def reasons_artifact(flow_run_id: Any) -> str:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        arts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    return str(next(a for a in arts if a.key == "ingest-reasons").data)


def everything_prefect_kept() -> str:
    """Every log line, artifact and flow-run parameter the Prefect API holds, as one text."""
    from prefect.client.orchestration import get_client
    from prefect.logging.handlers import APILogHandler

    APILogHandler().flush()
    with get_client(sync_client=True) as client:
        logs = client.read_logs(limit=200)
        offset = 200
        while batch := client.read_logs(limit=200, offset=offset):
            logs += batch
            offset += 200
        arts = client.read_artifacts()
        runs = client.read_flow_runs()
    parts = [log.message for log in logs]
    parts += [str(a.data) for a in arts]
    parts += [json.dumps(r.parameters, default=str) for r in runs]
    return "\n".join(parts)


def test_vendor_faults_end_in_documented_states_and_nothing_is_lost(
    fetch_setup: FetchSetup, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    s, p, fake = fetch_setup, fetch_setup.pipeline, fetch_setup.fake
    connect_output = "".join(s.connect(vendor, user) for vendor, user in USERS.items())

    s.notify("oura", (EXAMPLES / "oura_webhook_event.json").read_bytes())  # 401, good refresh
    s.notify("oura", oura_event("daily_sleep", "no-such-id", when="2025-07-01T10:00:00Z"))  # 404
    s.notify("whoop", whoop_event("workout", example("whoop_workout.json")["id"]))  # 429
    s.notify("polar", (EXAMPLES / "polar_exercise_event.json").read_bytes())  # 500, 500, 500
    s.notify("fitbit", (EXAMPLES / "fitbit_notification.json").read_bytes())  # 401, bad refresh
    s.notify("withings", (EXAMPLES / "withings_measure_notify.txt").read_bytes())  # fine
    assert p.ingest().is_completed()  # defers all six

    fake.inject(FaultKind.TOKEN_EXPIRED, vendor="oura", path="/v2/usercollection/daily_readiness/*")
    fake.inject(FaultKind.RATE_LIMIT, vendor="whoop", path="/developer/v2/*", retry_after_s=1)
    fake.inject(FaultKind.SERVER_ERROR, vendor="polar", path="/v3/exercises/*", times=100)
    fake.inject(FaultKind.GRANT_REVOKED, vendor="fitbit", path="/1/user/*/date/*")
    second = p.ingest()
    assert second.is_completed(), second.message
    assert by_state(s) == {
        "fetched": 2,  # the Oura readiness (after a refresh) and Withings
        "resolved_empty": 1,  # the 404
        "rate_limited": 1,
        "retry_later": 1,
        "needs_reauth": 1,
    }
    reasons = dict(
        p.query("SELECT state, reason FROM biobridge.notifications WHERE reason IS NOT NULL")
    )
    assert "HTTP 404" in reasons["resolved_empty"]
    assert "rate limit" in reasons["rate_limited"]
    assert "HTTP 500" in reasons["retry_later"]
    assert "invalid_grant" in reasons["needs_reauth"]
    polar_calls = [r for r in fake.requests("polar") if r.path.startswith("/v3/exercises/")]
    assert len(polar_calls) == 3  # BIOBRIDGE_IO_RETRIES=2: one try and two retries, then back off
    fitbit = p.query(
        "SELECT status, status_reason FROM biobridge.vendor_connections WHERE vendor = 'fitbit'"
    )[0]
    assert fitbit[0] == "needs_reauth" and "refresh refused" in fitbit[1]

    why = reasons_artifact(second.state_details.flow_run_id)
    for state in ("resolved_empty", "rate_limited", "retry_later", "needs_reauth"):
        assert f"| {state}: " in why, why
    shown = summary_artifact(second.state_details.flow_run_id)
    assert shown["fetch: fetched"] == 2 and shown["fetch: resolved empty"] == 1
    assert shown["fetch: rate limited"] == 1 and shown["fetch: retry later"] == 1
    assert shown["fetch: needs reauth"] == 1 and shown["fetch: token refreshes"] == 1
    with connect(p.db_url) as conn:
        assert verify(conn, landing_store()).ok  # backing off is accounted for, not a loss

    # The vendor recovers and the Fitbit user reconnects: a later run loads the rest.
    fake.clear_faults()
    connect_output += s.connect("fitbit", "carol")
    while p.scalar("SELECT count(*) FROM biobridge.notifications WHERE next_attempt_at > now()"):
        time.sleep(0.2)  # Retry-After: 1 s
    third = p.ingest()
    assert third.is_completed(), third.message
    assert by_state(s) == {"fetched": 5, "resolved_empty": 1}
    for device, name in (("whoop", "whoop_workout"), ("polar", "polar_exercise")):
        expected = len(example(f"{name}.expected.json")["rows"])
        assert (
            p.scalar(
                "SELECT count(*) FROM public.biometric_events WHERE device_type = $1", (device,)
            )
            == expected
        )
    assert (
        p.scalar("SELECT count(*) FROM public.biometric_events WHERE device_type = 'fitbit'") == 4
    )  # heart rate summary 1 + hrv 2 + skin temperature 1
    with connect(p.db_url) as conn:
        assert verify(conn, landing_store()).ok

    # No token anywhere: captured logs, connect's output, Prefect's logs, artifacts, parameters,
    # the fake's own request log; and the store holds only ciphertext.
    tokens = token_strings(fake)
    assert len(tokens) >= 10
    kept = everything_prefect_kept()
    assert "fetch-notifications" in kept or "fetch:" in kept  # the flow's logs were read
    seen = "\n".join([caplog.text, connect_output, kept, *(str(r.params) for r in fake.requests())])
    assert [t for t in tokens if t in seen] == []
    stored = " ".join(
        str(v) for row in p.query("SELECT * FROM biobridge.vendor_connections") for v in row
    )
    assert [t for t in tokens if t in stored] == []
