"""Issue 4.1: a loader SIGKILLed anywhere in a batch leaves every file loaded or pending, never
half-loaded; the next normal run loads the rest, each file exactly once."""

from __future__ import annotations

import random
import signal
import subprocess
from datetime import UTC, datetime, timedelta

import pytest

from tests.faults.helpers import (
    ROWS_PER_GENERIC_FILE,
    assert_accounted,
    child_env,
    land_at,
    python,
    wait_for,
)
from tests.pipeline import Pipeline
from tests.test_ingest import generic_body

pytestmark = pytest.mark.slow

FILES = 300
CHILD_APP = "bb_fault_child"


def land_files(p: Pipeline, n: int = FILES) -> None:
    start = datetime.now(UTC) - timedelta(minutes=30)
    for i in range(n):
        land_at(p.store, "oura", generic_body(f"kill_{i:04d}"), start + timedelta(seconds=i))


def child_url(p: Pipeline) -> str:
    return f"{p.db_url}?application_name={CHILD_APP}"


def child_backends(p: Pipeline) -> list[tuple[str, str]]:
    """(state, query) of every backend the child still has open."""
    return p.query(
        "SELECT state, left(query, 60) FROM pg_stat_activity "
        "WHERE application_name = $1 AND datname = current_database()",
        (CHILD_APP,),
    )


def loaded(p: Pipeline) -> int:
    return int(p.scalar("SELECT count(*) FROM biobridge.landed_files WHERE state = 'loaded'") or 0)


def restart_and_check(p: Pipeline) -> None:
    """A normal run after the kill: loads the rest; then the whole landing accounts exactly."""
    wait_for(lambda: not child_backends(p), timeout=10, what="the killed child's backends to end")
    state = p.ingest()
    assert state.is_completed(), state.message
    assert loaded(p) == FILES
    assert p.scalar("SELECT count(*) FROM biometric_events") == FILES * ROWS_PER_GENERIC_FILE
    assert_accounted(p)
    # The killed run's load record (if it got that far) is closed by the next run as abandoned:
    # nothing holds its liveness lock, however young it is.
    killed = p.query("SELECT status, error FROM biobridge.loads WHERE code_version = 'fault-test'")
    assert [s for s, _ in killed] in ([], ["failed"])
    assert all("abandoned" in str(error) for _, error in killed)


@pytest.mark.parametrize(
    ("point", "committed_batches"),
    [("read", 2), ("copy", 2), ("upsert", 2), ("before_commit", 2), ("after_commit", 3)],
)
def test_batch_killed_at_an_exact_point_then_next_run_loads_each_file_once(
    pipeline: Pipeline, point: str, committed_batches: int
) -> None:
    land_files(pipeline)
    child = subprocess.run(
        [python(), "-m", "tests.faults.batch_child", "--point", point, "--batch", "3"],
        env=child_env(BIOBRIDGE_DATABASE_URL=child_url(pipeline)),
        capture_output=True,
        timeout=60,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr.decode()[-2000:]

    # Exactly the batches committed before the kill are loaded; the dying one left no trace.
    assert loaded(pipeline) == committed_batches * 50
    assert (
        pipeline.scalar("SELECT count(*) FROM biometric_events")
        == committed_batches * 50 * ROWS_PER_GENERIC_FILE
    )
    assert pipeline.scalar("SELECT files_read FROM biobridge.loads") == committed_batches * 50
    restart_and_check(pipeline)


@pytest.mark.parametrize("seed", [11, 23, 47])
def test_cli_ingest_killed_at_a_random_moment_then_next_run_loads_each_file_once(
    pipeline: Pipeline, seed: int
) -> None:
    """The real `biobridge ingest` (Prefect flow, two workers) killed at a seeded random point
    of its run: once it has loaded a seeded number of files (0 to half of them; a delay in
    seconds let a faster loader finish first); the phase it was in is read from
    pg_stat_activity."""
    from prefect.settings import PREFECT_API_URL

    land_files(pipeline)
    target = random.Random(seed).randrange(0, FILES // 2)
    proc = subprocess.Popen(
        [python(), "-m", "deployments.cli", "ingest", "--batch-files", "10", "--workers", "2"],
        env=child_env(
            BIOBRIDGE_DATABASE_URL=child_url(pipeline), PREFECT_API_URL=str(PREFECT_API_URL.value())
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for(
            lambda: pipeline.scalar("SELECT count(*) FROM biobridge.landed_files") == FILES,
            timeout=45,
            what="the child's discovery",
        )
        wait_for(
            lambda: loaded(pipeline) >= target or proc.poll() is not None,
            timeout=60,
            what=f"the child to load {target} files",
        )
        phase = child_backends(pipeline)
        done_before = loaded(pipeline)
        proc.send_signal(signal.SIGKILL)
        out, _ = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL, out.decode()[-2000:]
    print(f"seed {seed}: killed at {target}+ files loaded ({done_before}), phase {phase}")
    assert 0 <= done_before < FILES
    restart_and_check(pipeline)
