"""Issue 11.4: large bodies that kill every run (out of memory) ahead of small webhooks.

The loader runs in a child process whose address space is limited (`RLIMIT_AS`), as under a
container's memory limit. Three ~15 MiB Garmin pushes landed first, then 50 small webhooks.
Before issue 11, one batch claimed all 53 files, every run died in it and claimed the same batch
again: 0 of the 50 small webhooks ever loaded. Now each large body is loaded alone, and a body
whose batch died `max_attempts` times while it was alone is set aside with the reason: the small
webhooks behind it load.
"""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from deployments.allocators import ALLOCATOR_ENV
from tests.faults.helpers import (
    ROOT,
    ROWS_PER_GENERIC_FILE,
    assert_accounted,
    child_env,
    land_at,
    python,
)
from tests.pipeline import Pipeline
from tests.test_ingest import generic_body

pytestmark = pytest.mark.slow

BIG_FILES = 3
SMALL_FILES = 50
# The child limits its address space to what its imports left plus this margin (see load_child):
# a batch of small webhooks needs little more, one ~15 MiB Garmin push about 1.5 GiB more. The
# child runs with the allocator settings of the `biobridge` command, as production's loaders do
# (without them its imports alone reserve 4x more, and whether a test that ran before had put
# them in this process's environment decided whether the limit killed anything).
ADDRESS_SPACE_MARGIN_MIB = 800
MAX_RUNS = 3 * BIG_FILES + 2


def big_garmin_body(n: int) -> bytes:
    """A Garmin dailies push of ~15 MiB: 3,300 days of 360 heart-rate samples each."""
    daily = json.loads((ROOT / "deployments/examples/garmin_dailies.json").read_text())["dailies"][
        0
    ]
    samples = {str(15 * i): 50 + i % 100 for i in range(360)}
    days = [
        {
            **daily,
            "userId": f"poison_{n}",
            "summaryId": f"poison-{n}-{d}",
            "startTimeInSeconds": 1_700_000_000 + 86_400 * d,
            "timeOffsetHeartRateSamples": samples,
        }
        for d in range(3_300)
    ]
    return orjson.dumps({"dailies": days})


def test_bodies_that_kill_every_run_are_set_aside_and_the_small_files_behind_them_load(
    pipeline: Pipeline,
) -> None:
    start = datetime.now(UTC) - timedelta(minutes=30)
    big = []
    for i in range(BIG_FILES):
        body = big_garmin_body(i)
        assert len(body) > 14 * 2**20
        big.append(land_at(pipeline.store, "garmin", body, start + timedelta(seconds=i)))
    for i in range(SMALL_FILES):
        land_at(
            pipeline.store,
            "oura",
            generic_body(f"small_{i:02d}"),
            start + timedelta(minutes=1, seconds=i),
        )

    runs = []
    for _ in range(MAX_RUNS):
        child = subprocess.run(
            [
                python(), "-m", "tests.faults.load_child", "--batch-files", "2000",
                "--address-space-margin-mib", str(ADDRESS_SPACE_MARGIN_MIB),
            ],
            env=child_env(BIOBRIDGE_DATABASE_URL=pipeline.db_url, **ALLOCATOR_ENV),
            capture_output=True,
            timeout=120,
        )  # fmt: skip
        runs.append(child.returncode)
        if child.returncode == 0:
            break
    print("exit codes of the runs:", runs)
    assert runs[-1] == 0, child.stderr.decode()[-3000:]
    assert runs[0] != 0, (
        "the limit no longer kills a run: the test proves nothing; the run printed "
        + child.stdout.decode()[-2000:]
    )

    states = dict(pipeline.query("SELECT object_key, state FROM biobridge.landed_files"))
    assert sorted(k for k, s in states.items() if s == "loaded") == sorted(
        k for k in states if k not in big
    )
    assert len(states) == BIG_FILES + SMALL_FILES
    assert pipeline.scalar("SELECT count(*) FROM biometric_events") == (
        SMALL_FILES * ROWS_PER_GENERIC_FILE
    )
    for key in big:
        assert states[key] == "quarantined"
        (reason,) = pipeline.query(
            "SELECT reason FROM biobridge.quarantine WHERE object_key = $1", (key,)
        )[0]
        assert "set aside after" in reason and key in reason
        (error,) = pipeline.query(
            "SELECT last_error FROM biobridge.landed_files WHERE object_key = $1", (key,)
        )[0]
        assert error == reason
    # Nothing of a set-aside file is left counting attempts.
    assert pipeline.scalar("SELECT count(*) FROM biobridge.open_batches") == 0
    assert_accounted(pipeline)
