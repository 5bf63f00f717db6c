"""Chunked replay (issue 13 item 3): Ctrl-C in the middle of a 30-day replay, then the same
command again, finishes with each chunk done once, each file re-derived once, `verify` clean.

The real CLI runs in a subprocess on the test's Postgres; SIGINT is sent once a few chunks are
done (polled in the chunk table), so the interruption always lands mid-run.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from deployments.cli import main
from deployments.progress import render
from tasks.replay import command_key, plan_chunks
from tests.helpers import land
from tests.pipeline import Pipeline
from tests.test_ingest import generic_body

START = datetime(2026, 10, 1, tzinfo=UTC)
DAYS = 30
FILES_PER_DAY = 2
REPO = Path(__file__).resolve().parent.parent


def test_chunks_cover_the_window_per_vendor() -> None:
    chunks = plan_chunks(["oura", "garmin"], start=START, end=START + timedelta(hours=60), hours=24)
    assert [(c.vendor, c.chunk_until - c.chunk_from) for c in chunks] == [
        ("oura", timedelta(hours=24)), ("garmin", timedelta(hours=24)),
        ("oura", timedelta(hours=24)), ("garmin", timedelta(hours=24)),
        ("oura", timedelta(hours=12)), ("garmin", timedelta(hours=12)),
    ]  # fmt: skip
    same = {
        command_key(
            mode="replay", vendors=v, start=s, end=START + timedelta(days=1),
            replay_states=["loaded"], chunk_hours=24,
        )
        for v, s in ((["oura", "garmin"], START), (["garmin", "oura"], START.astimezone()))
    }  # fmt: skip
    assert len(same) == 1  # vendor order and the instant's time zone do not matter
    assert render(9, 30) == f"[{'#' * 9}{'.' * 21}]  9/30 chunks"


def test_the_deployment_form_offers_chunking_with_defaults_and_descriptions() -> None:
    from flows.ingest import ingest

    schema = ingest.parameters.model_dump()["definitions"]["IngestParams"]["properties"]
    assert (
        schema["chunk_parallel"]["default"] == 2
        and "parallel" in schema["chunk_parallel"]["description"]
    )
    assert "resumes" in schema["chunk_hours"]["description"]
    assert schema["chunk_hours"]["default"] is None


def test_chunked_backfill_shows_progress_and_leaves_files_a_running_ingest_holds(
    pipeline: Pipeline,
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from flows.replay import PROGRESS_KEY
    from warehouse.ledger import record_discovered
    from warehouse.postgres import connect

    end = START + timedelta(days=3)
    keys = [
        land(
            pipeline.store,
            vendor,
            generic_body(f"u_{vendor}_{day}"),
            at=START + timedelta(days=day, hours=3),
        )
        for day in range(3)
        for vendor in ("oura", "apple_health")
    ]
    held = keys[2]  # a file a running ingest has claimed: in the ledger, pending, row-locked
    with connect(pipeline.db_url) as ingest_conn, ingest_conn.cursor() as cur:
        assert record_discovered(ingest_conn, [held]) == 1
        cur.execute(
            "SELECT 1 FROM biobridge.pending_files WHERE object_key = $1 FOR UPDATE", (held,)
        )
        cur.fetchall()
        state = pipeline.ingest(
            mode="backfill", vendors=["oura", "apple_health"], received_from=START,
            received_until=end, chunk_hours=24, chunk_parallel=3,
        )  # fmt: skip
        ingest_conn.rollback()
    assert state.is_completed(), state.message
    assert state.result()["files_loaded"] == len(keys) - 1
    assert (
        pipeline.scalar("SELECT state FROM biobridge.landed_files WHERE object_key = $1", (held,))
        == "pending"
    )
    assert {row[1:3] for row in chunk_rows(pipeline)} == {("done", 1)}
    assert len(chunk_rows(pipeline)) == 6  # 3 days x 2 vendors
    run_id = state.state_details.flow_run_id
    with get_client(sync_client=True) as client:
        arts = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[PROGRESS_KEY]))
        )
    mine = [a for a in arts if a.flow_run_id == run_id]
    assert len(mine) == 1 and float(str(mine[0].data)) == 100.0
    assert "6 of 6 chunks done" in str(mine[0].description)

    # The ingest that held the file loads it, once.
    assert pipeline.ingest().is_completed()
    assert pipeline.scalar(
        "SELECT count(*) FROM biobridge.landed_files WHERE state = 'loaded'"
    ) == len(keys)


def chunk_rows(p: Pipeline) -> list[tuple[object, ...]]:
    return p.query(
        "SELECT chunk_from, state, completions, load_id, finished_at FROM biobridge.replay_chunks "
        "ORDER BY chunk_from"
    )


def done_chunks(p: Pipeline) -> int:
    return int(p.scalar("SELECT count(*) FROM biobridge.replay_chunks WHERE state = 'done'"))


@pytest.mark.slow  # two CLI processes (bare: no Prefect server) over 30 days of chunks
@pytest.mark.timeout(900)  # ~3 min alone, more on a shared machine
def test_ctrl_c_mid_chunked_replay_then_the_same_command_does_each_chunk_once(
    pipeline: Pipeline, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    end = START + timedelta(days=DAYS)
    for day in range(DAYS):
        for i in range(FILES_PER_DAY):
            at = START + timedelta(days=day, hours=2 + 9 * i)
            land(pipeline.store, "oura", generic_body(f"u_{day}_{i}"), at=at)
    first = pipeline.ingest(mode="backfill", received_from=START, received_until=end)
    assert first.is_completed() and first.result()["files_loaded"] == DAYS * FILES_PER_DAY

    command = [
        sys.executable, "-m", "deployments.cli", "ingest", "--mode", "replay",
        "--state", "loaded", "--vendor", "oura", "--from", START.isoformat(),
        "--until", end.isoformat(), "--chunk-hours", "24", "--chunk-parallel", "2",
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env |= {"PREFECT_HOME": str(tmp_path / "prefect-cli"), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 240
        while done_chunks(pipeline) < 4:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no chunk finished within 240 s"
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, (out, err)
    before = {row[0]: row for row in chunk_rows(pipeline) if row[1] == "done"}
    assert 4 <= len(before) < DAYS, "the stop did not land mid-run"
    interrupted = pipeline.query(
        "SELECT load_id, status, error FROM biobridge.loads WHERE kind = 'replay'"
    )
    assert len(interrupted) == 1 and interrupted[0][1] == "failed", interrupted
    assert "stopped" in interrupted[0][2]

    again = subprocess.run(
        command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    assert again.returncode == 0, (again.stdout, again.stderr)
    assert f"{DAYS}/{DAYS} chunks" in again.stderr
    chunks = chunk_rows(pipeline)
    assert len(chunks) == DAYS
    assert {(state, completions) for _, state, completions, _, _ in chunks} == {("done", 1)}
    for row in chunks:  # the chunks done before the stop were not run again
        if row[0] in before:
            assert row == before[row[0]]
    loads = pipeline.query(
        "SELECT status, files_read FROM biobridge.loads WHERE kind = 'replay' ORDER BY load_id"
    )
    assert [status for status, _ in loads] == ["failed", "completed"]
    assert sum(n for _, n in loads) == DAYS * FILES_PER_DAY  # every file re-derived once
    assert (
        pipeline.scalar("SELECT count(*) FROM biobridge.replay_runs WHERE finished_at IS NOT NULL")
        == 1
    )

    capsys.readouterr()
    code = main(["verify", "--from", START.isoformat(), "--until", end.isoformat()])
    assert code == 0, capsys.readouterr().out
