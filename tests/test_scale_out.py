"""Issue 14 (2): two receivers and two Prefect workers on one process pool, S3 and Postgres.

Webhooks are posted to both receivers while the workers run the deployment's scheduled mode and
a backfill at the same time. Every acknowledged webhook is loaded exactly once, and `verify` is
clean. The topology is deployments/compose.yaml's, as processes (tests/scale_out.py).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from landing.settings import Settings
from landing.store import open_store
from ops.verify import verify
from tests.helpers import EXAMPLES
from tests.pg import create_database, drop_database
from tests.scale_out import scale_out
from tests.test_ingest import generic_body
from warehouse.postgres import connect, url_with_database

pytestmark = pytest.mark.slow

WEBHOOKS = 120
ROWS_PER_BODY = len(
    json.loads((EXAMPLES / "generic_daily_readiness.expected.json").read_text())["rows"]
)


@pytest.fixture
def prefect_db(pg_server_url: str) -> Iterator[str]:
    """A throwaway database for the Prefect server's own state (compose: `prefect`)."""
    name = create_database(pg_server_url, prefix="bb_prefect")
    yield url_with_database(pg_server_url, name)
    drop_database(pg_server_url, name)


async def post_all(
    receivers: list[str], bodies: list[bytes], *, pause_s: float
) -> list[httpx.Response]:
    """POST every body, alternating receivers, eight at a time, `pause_s` apart per lane."""
    limit = asyncio.Semaphore(8)
    async with httpx.AsyncClient(timeout=60) as client:

        async def post(i: int, body: bytes) -> httpx.Response:
            async with limit:
                await asyncio.sleep(pause_s)
                url = f"{receivers[i % len(receivers)]}/webhooks/generic"
                headers = {"content-type": "application/json"}
                return await client.post(url, content=body, headers=headers)

        return await asyncio.gather(*(post(i, b) for i, b in enumerate(bodies)))


def overlapped(runs: list[dict[str, object]]) -> bool:
    spans = sorted(
        (datetime.fromisoformat(str(r["start_time"])), datetime.fromisoformat(str(r["end_time"])))
        for r in runs
    )
    return any(later[0] < earlier[1] for earlier, later in itertools.pairwise(spans))


def test_two_receivers_and_two_workers_load_every_acknowledged_webhook_once(
    pg_url: str, prefect_db: str, bucket: str, tmp_path: Path
) -> None:
    landing = f"s3://{bucket}/landing"
    t0 = time.monotonic()
    with scale_out(
        tmp_path,
        database_url=pg_url,
        landing_url=landing,
        prefect_db_url=prefect_db,
        receivers=2,
        workers=2,
    ) as stack:
        print(f"stack up in {time.monotonic() - t0:.0f} s")
        started = datetime.now(UTC)
        window = {
            "received_from": (started - timedelta(minutes=5)).isoformat(),
            "received_until": (started + timedelta(hours=1)).isoformat(),
        }
        bodies = [generic_body(f"scale_user_{i:03d}") for i in range(WEBHOOKS)]
        third = WEBHOOKS // 3
        posted = asyncio.run(post_all(stack.receivers, bodies[:third], pause_s=0))
        # Small batches, so that runs in flight at once share the backlog.
        runs = [
            stack.run_deployment(mode="scheduled", batch_files=10),
            stack.run_deployment(mode="backfill", batch_files=10, **window),
        ]
        stack.wait_running(runs, timeout_s=120)
        # The rest arrives while the runs discover and load, spread over a few seconds.
        posted += asyncio.run(post_all(stack.receivers, bodies[third:], pause_s=0.5))
        acked = {r.json()["object_key"] for r in posted if r.status_code == 202}
        assert len(acked) == WEBHOOKS, [r.text for r in posted if r.status_code != 202][:3]
        first = stack.wait(runs, timeout_s=120)
        # The tail posted after the last discovery: one more scheduled run picks it up.
        last = stack.wait([stack.run_deployment(mode="scheduled")], timeout_s=90)
        print(f"runs done {time.monotonic() - t0:.0f} s after the start")
    finished = first + last
    assert [r["state_type"] for r in finished] == ["COMPLETED"] * len(finished), finished
    assert overlapped(first), "the scheduled run and the backfill never ran at the same time"

    with connect(pg_url) as conn, conn.cursor() as cur:
        cur.execute("SELECT object_key, state, attempts FROM biobridge.landed_files")
        ledger = {k: (s, a) for k, s, a in cur.fetchall()}
        cur.execute("SELECT coalesce(sum(files_loaded), 0), count(*) FROM biobridge.loads")
        files_loaded, loads = cur.fetchone() or (0, 0)
        cur.execute("SELECT source_key, count(*) FROM biometric_events GROUP BY 1")
        rows = dict(cur.fetchall())
        cur.execute("SELECT count(DISTINCT load_id) FROM biometric_events")
        (loading_runs,) = cur.fetchone() or (0,)
        settings = Settings(landing_url=landing)
        report = verify(conn, open_store(landing, settings))
    assert set(ledger) == acked
    assert set(ledger.values()) == {("loaded", 1)}, "a file was loaded more than once"
    assert files_loaded == WEBHOOKS and loads >= len(finished)
    assert rows == dict.fromkeys(acked, ROWS_PER_BODY)
    # Which run claims which batch is timing: with the faster loader one run can claim the whole
    # first third before the other's first claim. The contract is the overlap above and
    # exactly-once below it, not a share per run, so the split is only reported.
    assert report.ok, [str(d) for d in report.discrepancies]
    print(f"scale-out: {WEBHOOKS} webhooks, {loads} loads, rows written by {loading_runs} runs")
