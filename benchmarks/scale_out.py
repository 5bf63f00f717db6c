"""Throughput with 1, 2 and 3 Prefect workers on one process pool, and where the serial point is.

    uv run python benchmarks/scale_out.py [--files 400] [--samples 120] [--workers 1,2,3]
        [--store s3|local] [--batch-files 25] [--database-url postgresql://...]

The topology of deployments/compose.yaml as processes (tests/scale_out.py): a Prefect server on
Postgres, `prefect deploy` of deployments/prefect.yaml, W `prefect worker start --limit 1`.

1. Lands `--files` Garmin dailies bodies (`--samples` heart-rate samples each, so ~samples+20 rows
   per file) once, in a bucket of a `moto_server` child process (`--store s3`) or a folder.
2. For each worker count W: a fresh migrated database, W workers, then W scheduled-mode runs of
   the deployment submitted at once (`--batch-files` per batch, so the runs share the backlog by
   claim). Timed: from the first load record's start to the last one's end (`load span`: what the
   workers do once their flow-run processes are up), and from submitting to all runs finished.
3. Meanwhile (submit to done) a sampler asks Postgres every 20 ms who holds and who waits for
   the upsert's advisory lock (`tasks.load.UPSERT_LOCK`) in this database: `held` is the share
   of samples with a holder, `held_in_span` the same over the load span (its duty cycle), and
   `waited` the share with a loader queued behind it. A duty cycle near 1 with one worker means
   the upsert is the serial point: more workers only queue on it.
4. CPU seconds of the workers and their flow runs (RUSAGE_CHILDREN, after stopping them) per
   1,000 rows; the Postgres server's CPU is not in it (and not on this machine's bill alone).

Prints one line per W and a `RESULT {json}` line. On a 2-core machine a flat curve is expected.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from landing.keys import new_key  # noqa: E402
from landing.settings import Settings  # noqa: E402
from landing.store import ObjectMeta, open_store  # noqa: E402
from tasks.load import UPSERT_LOCK  # noqa: E402
from tests.scale_out import (  # noqa: E402
    Stack,
    base_env,
    deploy,
    free_port,
    prefect_server,
    start_workers,
    stop,
)
from warehouse.migrate import apply_migrations  # noqa: E402
from warehouse.postgres import connect, url_with_database  # noqa: E402

EXAMPLE = json.loads((ROOT / "deployments/examples/garmin_dailies.json").read_text())["dailies"][0]
FIRST_DAY = datetime(2025, 1, 1, tzinfo=UTC)
LOCK_HI, LOCK_LO = UPSERT_LOCK >> 32, UPSERT_LOCK & 0xFFFF_FFFF


def garmin_body(n: int, samples: int) -> bytes:
    """A dailies push of user n % 500 on day n // 500, `samples` heart-rate samples 15 s apart."""
    daily = {
        **EXAMPLE,
        "userId": f"scale_{n % 500:03d}",
        "summaryId": f"scale-{n}",
        "startTimeInSeconds": int((FIRST_DAY + timedelta(days=n // 500)).timestamp()),
        "timeOffsetHeartRateSamples": {str(15 * i): 50 + (7 * i + n) % 100 for i in range(samples)},
    }
    return orjson.dumps({"dailies": [daily]})


def land(landing_url: str, *, files: int, samples: int) -> None:
    store = open_store(landing_url, Settings(landing_url=landing_url))
    now = datetime.now(UTC)

    def put(n: int) -> None:
        body = garmin_body(n, samples)
        at = now - timedelta(seconds=files - n)
        meta = ObjectMeta.of_body(
            body,
            received_at=at,
            vendor="garmin",
            content_type="application/json",
            delivery_id=f"d{n}",
        )
        store.put(new_key("garmin", at), body, meta)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(put, range(files)))


def admin(server_url: str, statement: str) -> None:
    with connect(server_url, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(statement)


class LockSampler(threading.Thread):
    """Samples pg_locks for the upsert's advisory lock until stopped."""

    def __init__(self, db_url: str) -> None:
        super().__init__(daemon=True)
        self.db_url = db_url
        self.samples = self.held = self.waited = 0
        self.done = threading.Event()

    def run(self) -> None:
        with connect(self.db_url, autocommit=True) as conn, conn.cursor() as cur:
            while not self.done.is_set():
                cur.execute(
                    "SELECT count(*) FILTER (WHERE granted), count(*) FILTER (WHERE NOT granted) "
                    "FROM pg_locks WHERE locktype = 'advisory' AND classid = $1::bigint::oid "
                    # This database only: other databases on the server take the same key.
                    "AND database = (SELECT oid FROM pg_database "
                    "WHERE datname = current_database()) "
                    "AND objid = $2::bigint::oid AND objsubid = 1",
                    (LOCK_HI, LOCK_LO),
                )
                held, waiting = cur.fetchone() or (0, 0)
                self.samples += 1
                self.held += held > 0
                self.waited += waiting > 0
                time.sleep(0.02)


def measure(
    stack: Stack, *, server_url: str, workers: int, first: bool, args: argparse.Namespace
) -> dict[str, Any]:
    name = f"bb_scale_{secrets.token_hex(4)}"
    admin(server_url, f"CREATE DATABASE {name}")
    db_url = url_with_database(server_url, name)
    try:
        apply_migrations(db_url)
        stack.env["BIOBRIDGE_DATABASE_URL"] = db_url
        stack.workers.clear()
        with ExitStack() as pool:
            start_workers(pool, stack, workers)
            if first:  # the first worker created the pool: now the deployment can exist
                deploy(stack)
            sampler = LockSampler(db_url)
            sampler.start()
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            submitted = time.monotonic()
            runs = [
                stack.run_deployment(mode="scheduled", batch_files=args.batch_files)
                for _ in range(workers)
            ]
            finished = stack.wait(runs, timeout_s=1800)
            wall = time.monotonic() - submitted
            sampler.done.set()
            sampler.join()
            for proc in stack.workers:
                stop(proc)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        states = [r["state_type"] for r in finished]
        with connect(db_url) as conn, conn.cursor() as cur:
            cur.execute(
                "SELECT count(*) FILTER (WHERE state = 'loaded'), count(*) "
                "FROM biobridge.landed_files"
            )
            loaded, listed = cur.fetchone() or (0, 0)
            cur.execute(
                "SELECT extract(epoch FROM max(finished_at) - min(started_at)), "
                "sum(rows_inserted), count(*) FILTER (WHERE files_loaded > 0) "
                "FROM biobridge.loads"
            )
            span, rows, sharing = cur.fetchone() or (0, 0, 0)
    finally:
        admin(server_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return {
        "workers": workers,
        "states": states,
        "files_loaded": int(loaded),
        "files_listed": int(listed),
        "rows": int(rows or 0),
        "runs_that_loaded": int(sharing or 0),
        "load_span_s": round(float(span or 0), 2),
        "wall_s": round(wall, 2),
        "rows_per_s": round(int(rows or 0) / float(span or 1)),
        "files_per_s": round(int(loaded) / float(span or 1), 1),
        "cpu_s_per_1000_rows": round(cpu / max(int(rows or 0), 1) * 1000, 3),
        "upsert_lock_held": round(sampler.held / max(sampler.samples, 1), 2),
        # Only loads hold it, so over the load span its share is the sampled share scaled up.
        "upsert_lock_held_in_span": round(
            min(sampler.held / max(sampler.samples, 1) * wall / float(span or wall), 1), 2
        ),
        "upsert_lock_waited": round(sampler.waited / max(sampler.samples, 1), 2),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--files", type=int, default=400)
    p.add_argument("--samples", type=int, default=120)
    p.add_argument("--workers", default="1,2,3")
    p.add_argument("--store", choices=["s3", "local"], default="s3")
    p.add_argument("--batch-files", type=int, default=25)
    p.add_argument(
        "--database-url",
        default=os.environ.get("BIOBRIDGE_TEST_DATABASE_URL")
        or "postgresql://postgres@127.0.0.1:5432/postgres",
    )
    args = p.parse_args()
    counts = [int(w) for w in args.workers.split(",")]
    results = []
    with tempfile.TemporaryDirectory(prefix="bb-scale-") as tmp, ExitStack() as exits:
        work = Path(tmp)
        if args.store == "s3":
            port = free_port()
            moto = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            exits.callback(stop, moto)
            endpoint = f"http://127.0.0.1:{port}"
            fake = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench"}
            os.environ.update(fake | {"AWS_DEFAULT_REGION": "us-east-1"})
            os.environ["AWS_ENDPOINT_URL_S3"] = endpoint
            for _ in range(100):
                try:
                    boto3.client("s3").create_bucket(Bucket="bench")
                    break
                except Exception:  # moto still starting
                    time.sleep(0.2)
            landing = "s3://bench/landing"
        else:
            landing = (work / "landing").as_uri()
        t = time.monotonic()
        land(landing, files=args.files, samples=args.samples)
        print(f"landed {args.files} files in {time.monotonic() - t:.1f} s ({args.store})")
        prefect_db = f"bb_scale_prefect_{secrets.token_hex(4)}"
        admin(args.database_url, f"CREATE DATABASE {prefect_db}")
        exits.callback(admin, args.database_url, f"DROP DATABASE {prefect_db} WITH (FORCE)")
        env = base_env(work, api="", database_url="", landing_url=landing)
        # Only the runs submitted here: no schedule-made runs in the middle of a measurement.
        env["PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED"] = "false"
        api = exits.enter_context(
            prefect_server(
                work, env=env, prefect_db_url=url_with_database(args.database_url, prefect_db)
            )
        )
        stack = Stack(api=api, env=env | {"PREFECT_API_URL": api}, logs=work)
        for i, workers in enumerate(counts):
            result = measure(
                stack, server_url=args.database_url, workers=workers, first=i == 0, args=args
            )
            results.append(result)
            print(
                f"{workers} worker(s): {result['files_per_s']} files/s, {result['rows_per_s']} "
                f"rows/s over a {result['load_span_s']} s load span ({result['wall_s']} s from "
                f"submit), {result['runs_that_loaded']} runs loaded, "
                f"{result['cpu_s_per_1000_rows']} CPU-s/1k rows, upsert lock held "
                f"{result['upsert_lock_held']:.0%} of the time sampled "
                f"({result['upsert_lock_held_in_span']:.0%} of the load span), waited "
                f"{result['upsert_lock_waited']:.0%}, "
                f"{result['files_loaded']}/{args.files} files, states {result['states']}"
            )
    load1 = os.getloadavg()[0]
    print("RESULT " + json.dumps({"store": args.store, "loadavg_1m": load1, "runs": results}))


if __name__ == "__main__":
    main()
