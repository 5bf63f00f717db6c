"""The ingest flow end to end: real HTTP in, real Prefect flow runs, real Postgres out."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import orjson
import pytest

from tests.helpers import EXAMPLES, land
from tests.pipeline import Pipeline
from tests.tcp_proxy import TcpProxy

GENERIC = json.loads((EXAMPLES / "generic_daily_readiness.json").read_text())


def generic_body(user: str, **data: object) -> bytes:
    payload = {**GENERIC, "user_id": user, "data": {**GENERIC["data"], **data}}
    return orjson.dumps(payload)


def land_raw(p: Pipeline, vendor: str, body: bytes, *, ext: str = "json") -> str:
    """Put a body in the store directly, as a receiver of an older version might have."""
    return land(p.store, vendor, body, ext=ext)


def test_old_system_scenario_loads_420_rows_once_with_lineage(pipeline: Pipeline) -> None:
    for i in range(30):
        assert pipeline.post("oura", generic_body(f"oura_user_{i:02d}")).status_code == 202
        assert pipeline.post("apple_health", generic_body(f"ah_user_{i:02d}")).status_code == 202

    state = pipeline.ingest()
    assert state.is_completed(), state.message
    load = state.result()
    assert (load["files_read"], load["files_loaded"], load["rows_inserted"]) == (60, 60, 420)
    assert pipeline.scalar("SELECT count(*) FROM biometric_events") == 420

    rows = pipeline.query(
        "SELECT metric_type, value, unit, timestamp FROM biometric_events "
        "WHERE user_id = 'oura_user_07' AND device_type = 'oura' ORDER BY metric_type"
    )
    expected = json.loads((EXAMPLES / "generic_daily_readiness.expected.json").read_text())["rows"]
    want = sorted((r["metric_type"], float(r["value"]), r["unit"]) for r in expected)
    assert [(m, v, u) for m, v, u, _ in rows] == want
    assert {ts for *_, ts in rows} == {datetime(2025, 7, 28, 19, 28, 15, tzinfo=UTC)}

    again = pipeline.ingest()
    assert again.is_completed()
    assert again.result()["files_read"] == 0
    assert pipeline.scalar("SELECT count(*) FROM biometric_events") == 420

    # Lineage: every row's file is in the store and in the ledger, its load is a load record.
    keys = {k for (k,) in pipeline.query("SELECT DISTINCT source_key FROM biometric_events")}
    assert len(keys) == 60
    assert keys <= set(pipeline.store.list_keys("raw/"))
    orphans = pipeline.scalar(
        "SELECT count(*) FROM biometric_events e LEFT JOIN biobridge.loads l USING (load_id) "
        "WHERE l.load_id IS NULL"
    )
    assert orphans == 0
    assert (
        pipeline.scalar("SELECT count(*) FROM biobridge.landed_files WHERE state = 'loaded'") == 60
    )


def test_bad_records_are_quarantined_while_good_ones_load(pipeline: Pipeline) -> None:
    bad_value = generic_body("u_bad_value", resting_heart_rate="fast")
    assert pipeline.post("oura", bad_value).status_code == 202
    no_stamp = dict(GENERIC, user_id="u_no_stamp")
    del no_stamp["timestamp"]
    assert pipeline.post("oura", orjson.dumps(no_stamp)).status_code == 202
    hae = json.loads((EXAMPLES / "apple_health_auto_export.json").read_text())
    del hae["data"]["metrics"][1]["data"][0]["date"]  # resting_heart_rate's only sample
    assert (
        pipeline.post("apple_health", orjson.dumps(hae), **{"x-user-id": "u_hae"}).status_code
        == 202
    )
    not_json = land_raw(pipeline, "garmin", b"{this is not json")

    state = pipeline.ingest()
    assert state.is_completed(), state.message

    # The six good metrics of the bad-value file loaded; its bad one is quarantined by field.
    assert (
        pipeline.scalar("SELECT count(*) FROM biometric_events WHERE user_id = 'u_bad_value'") == 6
    )
    (field, reason) = pipeline.query(
        "SELECT q.field, q.reason FROM biobridge.quarantine q JOIN biobridge.landed_files f "
        "USING (object_key) WHERE f.state = 'loaded' AND q.found LIKE '%fast%'"
    )[0]
    assert "resting_heart_rate" in field and "resting_heart_rate" in reason

    stamp = pipeline.query(
        "SELECT f.state, q.field FROM biobridge.quarantine q JOIN biobridge.landed_files f "
        "USING (object_key) WHERE q.raw_excerpt LIKE '%u_no_stamp%'"
    )
    assert stamp and stamp[0][0] == "quarantined" and "timestamp" in stamp[0][1]

    hae_rows = pipeline.scalar("SELECT count(*) FROM biometric_events WHERE user_id = 'u_hae'")
    assert hae_rows == 23  # 24 expected rows less the sample without a date
    assert pipeline.query(
        "SELECT field FROM biobridge.quarantine WHERE object_key IN "
        "(SELECT object_key FROM biobridge.landed_files WHERE vendor = 'apple_health')"
    )[0][0].endswith("date")

    whole = pipeline.query(
        "SELECT f.state, q.record_index, q.reason FROM biobridge.quarantine q "
        "JOIN biobridge.landed_files f USING (object_key) WHERE object_key = $1",
        (not_json,),
    )
    assert whole[0][0] == "quarantined" and whole[0][1] is None and "not valid JSON" in whole[0][2]

    load = state.result()
    assert load["files_quarantined"] == 2 and load["records_quarantined"] == 4


def test_run_report_artifact_says_what_was_rejected(pipeline: Pipeline) -> None:
    from prefect.client.orchestration import get_client

    assert pipeline.post("oura", generic_body("u_art", sleep_score=True)).status_code == 202
    land_raw(pipeline, "oura", b"\x00\x01 not json")
    state = pipeline.ingest()
    assert state.is_completed()
    with get_client(sync_client=True) as client:
        from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

        arts = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["ingest-reasons"]))
        )
    newest = max(arts, key=lambda a: a.created)
    assert "sleep_score" in str(newest.data) and "&lt;body&gt;" in str(newest.data)


def test_a_run_with_warnings_says_so_in_its_prefect_state_and_tags(pipeline: Pipeline) -> None:
    """Issue 12 Why 5: a run that quarantined files was a plain green "Completed" with no message.
    Ops see what the API serves the UI: the state's name and message, and the run's tags (the
    dashboard and run list filter on them); a clean run stays a plain Completed."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        FlowRunFilter,
        FlowRunFilterId,
        FlowRunFilterState,
        FlowRunFilterStateName,
        FlowRunFilterTags,
    )

    from flows.report import WARNING_STATE_NAME

    assert pipeline.post("oura", generic_body("u_warn")).status_code == 202
    land_raw(pipeline, "whoop", b"\x00\x01 not json")
    warned = pipeline.ingest()
    assert pipeline.post("oura", generic_body("u_clean")).status_code == 202
    assert pipeline.post("oura", generic_body("u_clean")).status_code == 202  # the same again
    clean = pipeline.ingest()
    empty = pipeline.ingest()  # nothing new: a minute-by-minute run that must not bury the rest

    with get_client(sync_client=True) as client:
        run = client.read_flow_run(warned.state_details.flow_run_id)
        ok = client.read_flow_run(clean.state_details.flow_run_id)
        keys = {
            name: sorted(
                a.key or ""
                for a in client.read_artifacts(
                    artifact_filter=ArtifactFilter(
                        flow_run_id=ArtifactFilterFlowRunId(any_=[s.state_details.flow_run_id])
                    )
                )
            )
            for name, s in (("warned", warned), ("clean", clean), ("empty", empty))
        }
        ids = FlowRunFilterId(any_=[run.id, ok.id])
        by_name = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                id=ids,
                state=FlowRunFilterState(name=FlowRunFilterStateName(any_=[WARNING_STATE_NAME])),
            )
        )
        by_tag = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(id=ids, tags=FlowRunFilterTags(all_=["warnings"]))
        )
    assert run.state is not None and ok.state is not None
    assert (run.state.type.value, run.state.name) == ("COMPLETED", "Completed with warnings")
    assert "1 records quarantined (1 of 2 files wholly rejected)" in (run.state.message or "")
    assert {"quarantine", "warnings"} <= set(run.tags)
    assert [r.id for r in by_name] == [run.id] and [r.id for r in by_tag] == [run.id]

    # Artifacts: warnings get their own key (a history of only the runs worth a look); an
    # empty run publishes no report, only the trends.
    assert keys["warned"] == [
        "ingest-reasons",
        "ingest-summary",
        "ingest-trends",
        "ingest-warnings",
    ]
    assert keys["clean"] == ["ingest-reasons", "ingest-summary", "ingest-trends"]
    assert keys["empty"] == ["ingest-trends"]
    assert (ok.state.type.value, ok.state.name) == ("COMPLETED", "Completed")
    assert "warnings" not in ok.tags
    # Issue 12 Why 6: the state says how many rows were unchanged (identical data posted again),
    # the load record's own figure.
    assert f"{clean.result()['rows_unchanged']} unchanged" in (ok.state.message or "")


def test_redelivery_with_corrected_values_latest_received_wins(pipeline: Pipeline) -> None:
    assert pipeline.post("oura", generic_body("u_fix", readiness_score=50)).status_code == 202
    assert pipeline.ingest().is_completed()
    for _ in range(3):  # the vendor retries the old body
        assert pipeline.post("oura", generic_body("u_fix", readiness_score=50)).status_code == 202
    assert pipeline.post("oura", generic_body("u_fix", readiness_score=77)).status_code == 202
    state = pipeline.ingest()
    assert state.is_completed()
    assert pipeline.query(
        "SELECT value FROM biometric_events WHERE user_id = 'u_fix' "
        "AND metric_type = 'readiness_score'"
    ) == [(77.0,)]
    assert pipeline.scalar("SELECT count(*) FROM biometric_events WHERE user_id = 'u_fix'") == 7


def test_postgres_lost_mid_run_fails_loudly_then_loads_everything_once(
    pipeline: Pipeline, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tasks import batch, runtime

    for i in range(5):
        assert pipeline.post("oura", generic_body(f"u_outage_{i}")).status_code == 202
    host_port = pg_url.split("@", 1)[1].split("/", 1)[0]
    host, port = host_port.rsplit(":", 1)
    with TcpProxy(host, int(port)) as proxy:
        monkeypatch.setenv(
            "BIOBRIDGE_DATABASE_URL", pg_url.replace(host_port, f"127.0.0.1:{proxy.port}")
        )
        runtime.reset()
        real_plan = batch.plan_batch

        def plan_then_cut(*args: object, **kwargs: object) -> object:
            plan = real_plan(*args, **kwargs)  # type: ignore[arg-type]
            proxy.cut()  # Postgres goes away between the claim and the write
            return plan

        monkeypatch.setattr(batch, "plan_batch", plan_then_cut)
        state = pipeline.ingest()
        assert state.is_failed()
        monkeypatch.setattr(batch, "plan_batch", real_plan)
        assert pipeline.scalar("SELECT count(*) FROM biometric_events") == 0
        assert (
            pipeline.scalar("SELECT count(*) FROM biobridge.landed_files WHERE state <> 'pending'")
            == 0
        )

        proxy.restore()
        state = pipeline.ingest()
        assert state.is_completed(), state.message
    assert pipeline.scalar("SELECT count(*) FROM biometric_events") == 35
    assert (
        pipeline.scalar("SELECT count(*) FROM biobridge.landed_files WHERE state = 'loaded'") == 5
    )


def test_s3_landing_is_ingested_the_same_way(s3_pipeline: Pipeline) -> None:
    for i in range(10):
        assert s3_pipeline.post("apple_health", generic_body(f"s3_user_{i}")).status_code == 202
    state = s3_pipeline.ingest()
    assert state.is_completed(), state.message
    assert s3_pipeline.scalar("SELECT count(*) FROM biometric_events") == 70


def test_a_dead_runs_load_record_is_closed_as_abandoned_a_live_one_is_not(
    pipeline: Pipeline,
) -> None:
    from warehouse.ledger import load_liveness
    from warehouse.postgres import connect

    with connect(pipeline.db_url) as conn, conn.cursor() as cur:
        for _ in range(2):
            cur.execute(
                "INSERT INTO biobridge.loads (kind, code_version, started_at) "
                "VALUES ('scheduled', 'test', now() - interval '2 hours') RETURNING load_id"
            )
        cur.execute("SELECT load_id FROM biobridge.loads ORDER BY load_id")
        dead, alive = (i for (i,) in cur.fetchall())
        conn.commit()
    with load_liveness(pipeline.db_url, alive):  # its process is still running
        assert pipeline.ingest().is_completed()
    rows = dict(pipeline.query("SELECT load_id, status FROM biobridge.loads WHERE load_id < 3"))
    assert rows == {dead: "failed", alive: "running"}
    assert "abandoned" in pipeline.scalar(
        "SELECT error FROM biobridge.loads WHERE load_id = $1", (dead,)
    )


@pytest.mark.parametrize("signals", [1, 2])
def test_a_ctrl_c_while_the_load_record_opens_still_closes_it(
    pipeline: Pipeline, signals: int
) -> None:
    """The record exists once its INSERT commits; under Prefect the step returns only after the
    API has the task's end. A Ctrl-C in between (here: right after the step's own work) must
    still close the record as stopped, not leave it 'running'. A second Ctrl-C meanwhile acts
    at once (a stuck API must not make Ctrl-C powerless): the record is then left 'running' for
    the next run to close as abandoned, which it does."""
    import dataclasses
    import os
    import signal
    import time
    from typing import Any

    from flows.body import run_body
    from flows.params import IngestParams
    from tasks.run_context import bare_run
    from tasks.settings import get_pipeline_settings
    from tasks.steps import bare_steps

    land_raw(pipeline, "oura", generic_body("ctrlc-open"))
    with bare_run(), bare_steps(get_pipeline_settings(), threads=2) as steps:
        opened = steps.open_load

        def open_then_ctrl_c(**kwargs: Any) -> int:
            load_id = opened(**kwargs)
            for _ in range(signals):
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(0.05)  # the tail the step still runs (Prefect's API call)
            return load_id

        handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            with pytest.raises(KeyboardInterrupt):
                run_body(dataclasses.replace(steps, open_load=open_then_ctrl_c), IngestParams())
        finally:  # a stopped run ignores further signals while it closes: this process goes on
            for signum, handler in handlers.items():
                signal.signal(signum, handler)
    status, error = pipeline.query("SELECT status, error FROM biobridge.loads")[0]
    if signals == 1:
        assert status == "failed" and error.startswith("stopped: the run received SIGINT")
    else:
        assert status == "running"
        assert pipeline.ingest().is_completed()
        first = "SELECT status, error FROM biobridge.loads ORDER BY load_id LIMIT 1"
        status, error = pipeline.query(first)[0]
        assert status == "failed" and "abandoned" in error
    assert pipeline.scalar("SELECT count(*) FROM biobridge.loads") == signals


def test_in_process_runs_end_without_joining_the_heartbeat_thread(prefect_harness: None) -> None:
    """`deployments.run.unjoined_heartbeats`: a sync run no longer waits up to 1 s at its end
    for Prefect's heartbeat thread to wake. It fails here when a Prefect upgrade drops the
    parameter it relies on, rather than the CLI silently slowing down again; a run with
    heartbeats on still completes."""
    import prefect.flow_engine as engine
    from prefect import flow
    from prefect.flow_engine import run_flow
    from prefect.settings import get_current_settings

    from deployments.run import unjoined_heartbeats

    assert unjoined_heartbeats()
    assert unjoined_heartbeats()  # applied once, however often it is called
    assert engine._send_heartbeats.keywords == {"join_on_exit": False}  # type: ignore[attr-defined]
    assert get_current_settings().flows.heartbeat_frequency is not None  # the thread does start

    @flow
    def tiny() -> int:
        return 7

    state = run_flow(tiny, return_type="state")

    assert state.is_completed() and state.result() == 7
