"""`biobridge ingest` with no Prefect server reachable runs bare (issue 11 item 3): the flow's body
in the command's own process, without importing Prefect or starting an API, with the same load
record, exit codes and stop behaviour as a run under Prefect.

Each test runs the real CLI as a subprocess on its own database and landing folder, with no
PREFECT_* variable and no stack file in its data dir.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from landing.settings import Settings
from landing.store import open_store
from tests.faults.helpers import ROWS_PER_GENERIC_FILE, wait_for
from tests.helpers import land
from tests.test_ingest import generic_body
from warehouse.postgres import connect

REPO = Path(__file__).resolve().parent.parent
# The CLI, and at its exit the Prefect modules it imported (a bare run imports none).
CLI = [
    sys.executable, "-c",
    "import atexit, sys\n"
    "atexit.register(lambda: print('prefect modules:', sorted(m for m in sys.modules "
    "if m.split('.')[0] == 'prefect'), file=sys.stderr, flush=True))\n"
    "from deployments.cli import main\n"
    "raise SystemExit(main())",
    "ingest",
]  # fmt: skip


def bare_env(tmp_path: Path, db_url: str) -> dict[str, str]:
    """The machine's environment without any Prefect or Biobridge setting, plus this test's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BIOBRIDGE_", "PREFECT_"))}
    return env | {
        "BIOBRIDGE_DATA_DIR": str(tmp_path / "data"),
        "BIOBRIDGE_LANDING_URL": (tmp_path / "landing").as_uri(),
        "BIOBRIDGE_DATABASE_URL": db_url,
        "BIOBRIDGE_RETRY_BACKOFF_S": "0.05",
        "PYTHONUNBUFFERED": "1",
    }


def land_files(tmp_path: Path, n: int) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    store = open_store((tmp_path / "landing").as_uri(), settings)
    start = datetime.now(UTC) - timedelta(minutes=30)  # settled: past the ack deadline
    for i in range(n):
        land(store, "oura", generic_body(f"bare_{i:04d}"), at=start + timedelta(seconds=i))


def query(db_url: str, sql: str) -> list[tuple[object, ...]]:
    with connect(db_url) as conn, conn.cursor() as cur:
        cur.execute(sql)
        return list(cur.fetchall())


def loaded(db_url: str) -> int:
    rows = query(db_url, "SELECT count(*) FROM biobridge.landed_files WHERE state = 'loaded'")
    return int(str(rows[0][0]))


def test_ingest_without_a_server_loads_the_files_without_prefect(
    pg_url: str, tmp_path: Path
) -> None:
    land_files(tmp_path, 30)
    done = subprocess.run(
        [*CLI, "--batch-files", "7", "--workers", "2"],
        cwd=REPO, env=bare_env(tmp_path, pg_url), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, (done.stdout, done.stderr)
    assert "prefect modules: []" in done.stderr  # no Prefect, so no Prefect API either
    assert not (tmp_path / "data" / "prefect" / "prefect.db").exists()
    (load,) = query(
        pg_url,
        "SELECT load_id, status, error, flow_run_id, files_read, files_loaded, rows_inserted, "
        "finished_at IS NOT NULL FROM biobridge.loads",
    )
    load_id, status, error, flow_run_id, files_read, files_loaded, rows, finished = load
    assert (status, error, flow_run_id, finished) == ("completed", None, None, True)
    assert (files_read, files_loaded, rows) == (30, 30, 30 * ROWS_PER_GENERIC_FILE)
    assert query(pg_url, "SELECT count(*) FROM public.biometric_events") == [
        (30 * ROWS_PER_GENERIC_FILE,)
    ]
    # The CLI's summary as under Prefect; the run's log lines name their step; the Prefect-only
    # outputs are said to be skipped, once.
    assert f"load {load_id}: completed" in done.stdout and "files loaded         30" in done.stdout
    assert done.stderr.count("biobridge.run.load-batch - batch:") == 5  # 30 files by 7
    assert "discovered 30 new files" in done.stderr
    assert done.stderr.count("no Prefect server: the run's artifacts") == 1

    again = subprocess.run(
        CLI, cwd=REPO, env=bare_env(tmp_path, pg_url), capture_output=True, text=True, timeout=120
    )
    assert again.returncode == 0, (again.stdout, again.stderr)
    assert "nothing new to load" in again.stderr


@pytest.mark.parametrize(("sig", "exit_code"), [(signal.SIGINT, 130), (signal.SIGTERM, -15)])
def test_a_stop_mid_run_closes_the_load_as_stopped_and_committed_batches_stand(
    pg_url: str, tmp_path: Path, sig: signal.Signals, exit_code: int
) -> None:
    """Ctrl-C exits 130 (as under Prefect), SIGTERM ends the process by it, as Prefect's engine
    re-raises it; either way the load record is closed first, as failed with "stopped"."""
    files = 400
    land_files(tmp_path, files)
    proc = subprocess.Popen(
        [*CLI, "--batch-files", "4", "--workers", "2"],
        cwd=REPO, env=bare_env(tmp_path, pg_url), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        wait_for(
            lambda: proc.poll() is not None or loaded(pg_url) >= 12,
            timeout=120,
            what="the run to load a few batches",
        )
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == exit_code, (out, err[-3000:])
    (load,) = query(pg_url, "SELECT status, error, files_loaded FROM biobridge.loads")
    status, error, files_loaded = load
    assert status == "failed", (status, error)
    assert str(error).startswith(f"stopped: the run received {sig.name}"), error
    # Committed batches stand (a batch in flight may commit after the record closed: the
    # ledger, not the record's counts, is the truth); the rest stays pending.
    done_files = loaded(pg_url)
    assert 12 <= done_files < files, "the stop did not land mid-run"
    assert int(str(files_loaded)) <= done_files
    assert query(pg_url, "SELECT count(*) FROM public.biometric_events") == [
        (done_files * ROWS_PER_GENERIC_FILE,)
    ]
    if sig == signal.SIGINT:
        assert "interrupted: the run stopped" in err

    again = subprocess.run(
        CLI, cwd=REPO, env=bare_env(tmp_path, pg_url), capture_output=True, text=True, timeout=120
    )
    assert again.returncode == 0, (again.stdout, again.stderr)
    assert loaded(pg_url) == files
    assert query(pg_url, "SELECT count(*) FROM public.biometric_events") == [
        (files * ROWS_PER_GENERIC_FILE,)
    ]
