"""End-to-end ingest throughput against the ceiling of a plain COPY, measured in the same run.

    uv run python benchmarks/ingest.py [--files 20000] [--hr-share 0.1] [--hr-samples 360]
        [--mix hr-share|small|both] [--workers 2] [--batch-files 2000] [--database-url URL]
        [--memory-only] [--work-dir DIR] [--runner bare|prefect] [--separate-api]

`--mix both` runs the small-file mix (7 rows per file) and then the Garmin mix (10 %).

What it does, in order:

1. Creates a fresh database `bb_bench_<random>` on the server of `--database-url` (default: the
   machine's Postgres) and migrates it, as a deployed database already is (the flow's own
   migrate step is then a no-op). The database is dropped at the end, also on failure.
2. Lands `--files` bodies in a temporary local landing folder, in the store's layout (keys from
   `landing.keys.new_key`, `ObjectMeta` sidecars, read back with the real store): a share
   `--hr-share` are Garmin push bodies (all daily fields plus `timeOffsetHeartRateSamples` of
   `--hr-samples` samples), the rest generic-shape bodies (7 metrics) under `oura` and
   `apple_health`. Received times are spread over the last 24 hours; no two rows share a key.
3. Runs the production flow in a fresh child process, timing the call: landed files to committed
   rows. `--runner bare` (the default): as `biobridge ingest` runs it with no Prefect server
   (`flows.bare.run_bare`: the flow's body without Prefect); `--runner prefect`: the Prefect flow
   `flows.ingest.ingest(IngestParams(...))` on Prefect's ephemeral API (warmed up before the
   clock starts), or with `--separate-api` on a Prefect API in its own process. The child
   reports its peak RSS (the Postgres server is not counted), and the busy time of each stage,
   summed over the `--workers` threads.
4. Checks `SELECT count(*)` equals the flow's `rows_inserted` (and the rows the bodies hold), then
   measures two ceilings on exactly those rows, already flattened (only the COPY is timed, each
   after a CHECKPOINT): the reference one, a binary COPY of the seed's columns into a table
   with only those columns, the primary key and the measurement key (the least any correct
   loader pays); and a heavier one, `psql \\copy` of CSV into `ceiling`, an empty
   `LIKE public.biometric_events INCLUDING ALL` copy (all our columns and indexes).
5. Prints rows/s and files/s of the flow and of the whole child process (imports, Prefect's
   ephemeral API under `--runner prefect`, shutdown), the ratio to the binary ceiling, peak RSS,
   stage times, and one `RESULT {json}` line.

How to read it: `x binary` = ceiling seconds / ours; 1.0 would mean that reading, parsing,
flattening, validating, the ledger and the upsert cost nothing beyond writing the rows. Peak RSS
should not grow with `--files` (batches are bounded); compare runs at 20,000 and 100,000 files.
Stage times are thread-busy seconds, so with 2 workers they can add up to twice the wall time;
beside them, each stage's thread CPU seconds and the flow process's CPU seconds per 1k files,
which a loaded machine disturbs far less than wall times.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import resource
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import ExitStack, closing, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import psutil  # type: ignore[import-untyped]
import pyarrow.csv as pa_csv

from deployments.allocators import tune_allocators
from landing.keys import new_key
from landing.local_store import META_SUFFIX
from landing.store import ObjectMeta, open_store
from warehouse.migrate import apply_migrations
from warehouse.postgres import Connection, connect, display_url, url_with_database

DEFAULT_SERVER_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
EXAMPLES = Path(__file__).resolve().parents[1] / "deployments" / "examples"
GENERIC_VENDORS = ("oura", "apple_health")
USERS = 1_000
HR_INTERVAL_S = 15
FIRST_DAY = datetime(2025, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Templates:
    """Example bodies from the vendor spec, and how many rows each kind of body yields."""

    generic: dict[str, Any]
    garmin_daily: dict[str, Any]
    generic_rows: int
    garmin_scalar_rows: int

    @classmethod
    def load(cls) -> Templates:
        generic = json.loads((EXAMPLES / "generic_daily_readiness.json").read_text())
        garmin = json.loads((EXAMPLES / "garmin_dailies.json").read_text())
        expected = json.loads((EXAMPLES / "garmin_dailies.expected.json").read_text())
        daily = garmin["dailies"][0]
        scalar_rows = expected["row_count"] - len(daily["timeOffsetHeartRateSamples"])
        return cls(generic, daily, len(generic["data"]), scalar_rows)


@dataclass(frozen=True)
class Landed:
    """What was landed: file counts and the rows the bodies hold."""

    files: int
    garmin_files: int
    expected_rows: int
    bytes: int
    seconds: float


def generic_body(t: Templates, n: int) -> bytes:
    """Generic shape, 7 metrics; file n is user n % USERS in hour n // USERS (unique keys; a
    million files span 42 days, none in the future: by day, files past ~700k were quarantined
    as future measurements)."""
    stamp = FIRST_DAY + timedelta(hours=n // USERS, seconds=n % 3_600)
    data = {**t.generic["data"], "readiness_score": 60 + n % 40, "resting_heart_rate": 45 + n % 20}
    return orjson.dumps(
        {
            **t.generic,
            "user_id": f"bench_user_{n % USERS:04d}",
            "timestamp": stamp.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "data": data,
        }
    )


def garmin_body(t: Templates, n: int, samples: int) -> bytes:
    """A dailies push with every daily field and `samples` heart-rate samples 15 s apart."""
    start = int((FIRST_DAY + timedelta(days=n // USERS)).timestamp())
    daily = {
        **t.garmin_daily,
        "userId": f"bench_garmin_{n % USERS:04d}",
        "summaryId": f"bench-{n}",
        "startTimeInSeconds": start,
        "steps": 5_000 + n % 10_000,
        "timeOffsetHeartRateSamples": {
            str(HR_INTERVAL_S * i): 50 + (7 * i + n) % 100 for i in range(samples)
        },
    }
    return orjson.dumps({"dailies": [daily]})


def land_files(root: Path, *, files: int, hr_share: float, hr_samples: int) -> Landed:
    """Write `files` objects into a local landing folder, in the layout `LocalStore` reads.

    `LocalStore.put` fsyncs two files and their folder per object (~200 puts/s here): durability
    is pointless for a throwaway folder, so this writes the same two files per key directly and
    then reads a sample back through the real store to prove the layout.
    """
    started = time.perf_counter()
    t = Templates.load()
    store = open_store(root.as_uri())
    garmin_total = round(files * hr_share)
    span = timedelta(hours=24)
    first_received = datetime.now(UTC) - span - timedelta(minutes=15)
    made: set[Path] = set()
    size = 0
    sample: list[tuple[str, bytes, ObjectMeta]] = []
    for i in range(files):
        # Bresenham-style spread: Garmin files are evenly interleaved with generic ones.
        is_garmin = (i + 1) * garmin_total // files > i * garmin_total // files
        vendor = "garmin" if is_garmin else GENERIC_VENDORS[i % 2]
        body = garmin_body(t, i, hr_samples) if is_garmin else generic_body(t, i)
        received_at = first_received + span * (i / files)
        key = new_key(vendor, received_at)
        meta = ObjectMeta.of_body(
            body,
            received_at=received_at,
            vendor=vendor,
            content_type="application/json",
            delivery_id=f"bench-{i}",
        )
        path = root.joinpath(*key.split("/"))
        if path.parent not in made:
            path.parent.mkdir(parents=True, exist_ok=True)
            made.add(path.parent)
        path.with_name(path.name + META_SUFFIX).write_bytes(meta.to_json())
        path.write_bytes(body)
        size += len(body)
        if i % max(1, files // 5) == 0:
            sample.append((key, body, meta))
    for key, body, meta in sample:
        if store.get(key) != (body, meta):
            raise RuntimeError(f"{key}: the store reads back other bytes or metadata")
    expected = (files - garmin_total) * t.generic_rows + garmin_total * (
        t.garmin_scalar_rows + hr_samples
    )
    return Landed(files, garmin_total, expected, size, time.perf_counter() - started)


class StageClock:
    """Busy seconds, CPU seconds of the calling thread, and calls per label, summed over threads.

    On a shared machine the busy (wall) seconds include waiting for a core and for the GIL;
    the thread CPU seconds are what a stage costs this process, and vary much less."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.seconds: dict[str, float] = defaultdict(float)
        self.cpu: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)

    def add(self, label: str, seconds: float, cpu: float = 0.0) -> None:
        with self._lock:
            self.seconds[label] += seconds
            self.cpu[label] += cpu
            self.calls[label] += 1

    def wrap(self, label: str | Callable[..., str], fn: Callable[..., Any]) -> Callable[..., Any]:
        """`fn`, timed under `label` (or under `label(*args)` when it is a function)."""

        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            cpu = time.thread_time()
            try:
                return fn(*args, **kwargs)
            finally:
                name = label(*args, **kwargs) if callable(label) else label
                self.add(name, time.perf_counter() - started, time.thread_time() - cpu)

        return timed


_SQL_LABELS = (
    ("WITH upserted", "write: upsert into biometric_events"),
    ("UPDATE public.biometric_events", "write: update newer deliveries"),
    ("INSERT INTO public.biometric_events", "write: insert absent keys"),
    ("DO $bb$", "write: insert absent keys (plain INSERT first)"),
    ("SELECT current_setting('biobridge.plain", "write: insert absent keys (plain INSERT first)"),
    ("INSERT INTO biobridge.open_batches", "claim: open batch record"),
    ("SELECT k, count(*)", "claim: failed attempts"),
    ("SELECT pg_advisory_xact_lock", "apply: wait for the upsert lock"),
    ("UPDATE biobridge.landed_files AS f", "write: ledger update"),
    ("INSERT INTO biobridge.quarantine", "write: quarantine insert"),
    ("UPDATE biobridge.loads SET files_read", "write: load counts"),
    ("SELECT object_key, delivery_seq", "claim: SELECT ... FOR UPDATE SKIP LOCKED"),
    ("WITH new AS (INSERT INTO biobridge.landed_files", "discover: ledger insert"),
    ("DELETE FROM biobridge.pending_files", "write: dequeue settled files"),
)


def _sql_label(_cursor: Any, operation: str, *_: Any, **__: Any) -> str:
    text = operation.lstrip()
    return next((label for start, label in _SQL_LABELS if text.startswith(start)), "other SQL")


def instrument(clock: StageClock) -> None:
    """Time the stages of `process_batch` and the SQL under them; behaviour is unchanged."""
    from adbc_driver_manager import dbapi

    from tasks import batch, steps

    for name, label in (
        ("claim_pending", "claim"),
        ("fetch_within_budget", "read: fetch files"),
        ("plan_batch", "plan: parse, flatten, validate, dedupe"),
        ("stage_batch", "stage: COPY into temp tables"),
        ("apply_batch", "apply: upsert, quarantine, ledger, commit (serialised)"),
    ):
        setattr(batch, name, clock.wrap(label, getattr(batch, name)))
    steps.discover = clock.wrap("discover (total)", steps.discover)  # type: ignore[attr-defined]
    dbapi.Cursor.execute = clock.wrap(_sql_label, dbapi.Cursor.execute)  # type: ignore[method-assign]
    dbapi.Cursor.adbc_ingest = clock.wrap(  # type: ignore[method-assign]
        lambda _cur, table, *a, **k: f"COPY (adbc_ingest) into {table}",
        dbapi.Cursor.adbc_ingest,
    )
    dbapi.Connection.commit = clock.wrap("commit", dbapi.Connection.commit)  # type: ignore[method-assign]


def run_only(args: argparse.Namespace) -> None:
    """Child: run the flow once, as production does, and write the measurements as JSON."""
    work = Path(args.work)
    os.environ.update(
        {
            "BIOBRIDGE_DATA_DIR": str(work / "data"),
            "BIOBRIDGE_LANDING_URL": (work / "landing").as_uri(),
            "BIOBRIDGE_DATABASE_URL": args.database_url,
        }
    )
    from deployments.prefect_env import configure_prefect_env
    from flows.params import IngestParams

    configure_prefect_env(work / "data")
    params = IngestParams(batch_files=args.batch_files, workers=args.workers)
    run = run_bare_flow if args.runner == "bare" else prefect_flow_warmed_up()
    clock = StageClock()
    instrument(clock)
    before = resource.getrusage(resource.RUSAGE_SELF)
    rss_before = before.ru_maxrss
    started = time.perf_counter()
    load = run(params)
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_SELF)
    result = {
        "seconds": seconds,
        "cpu_seconds": (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime),
        "load": {k: v for k, v in load.items() if isinstance(v, int | str | None)},
        "rss_before_kib": rss_before,
        "rss_peak_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "stages": {k: [clock.seconds[k], clock.calls[k], clock.cpu[k]] for k in clock.seconds},
    }
    Path(args.result).write_text(json.dumps(result, default=str))


def run_bare_flow(params: Any) -> Any:
    """The flow's body without Prefect, as `biobridge ingest` runs it with no server."""
    from flows.bare import run_bare

    load, _found = run_bare(params)
    return load


def prefect_flow_warmed_up() -> Callable[[Any], Any]:
    """The Prefect flow, its API started (ephemeral, or `--separate-api`) before the clock."""
    from prefect import flow

    from flows.ingest import ingest

    @flow(name="bench-warm-up")
    def warm_up() -> None:
        """Start the ephemeral API before the clock does."""

    warm_up()
    return ingest


def run_child(args: argparse.Namespace, work: Path, db_url: str) -> dict[str, Any]:
    """Run `run_only` in a fresh interpreter; its log goes to `work/ingest.log`."""
    result = work / "result.json"
    log = work / "ingest.log"
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--_run-only",
        f"--work={work}",
        f"--result={result}",
        f"--batch-files={args.batch_files}",
        f"--workers={args.workers}",
        f"--database-url={db_url}",
        f"--runner={args.runner}",
    ]
    with ExitStack() as stack:
        env, api = None, None
        if args.separate_api:
            env, api = separate_api_env(stack, work)
        api_cpu = _cpu_seconds(api)
        started = time.perf_counter()
        with log.open("wb") as out:
            done = subprocess.run(
                command, stdout=out, stderr=subprocess.STDOUT, check=False, env=env
            )
        child_seconds = time.perf_counter() - started
        api_cpu = _cpu_seconds(api) - api_cpu
    if done.returncode != 0 or not result.exists():
        tail = log.read_text(errors="replace")[-4000:]
        raise RuntimeError(f"the ingest child failed (exit {done.returncode}); log tail:\n{tail}")
    measured = {**json.loads(result.read_text()), "child_seconds": child_seconds}
    return measured | ({"api_cpu_s": round(api_cpu, 2)} if api is not None else {})


def _cpu_seconds(proc: subprocess.Popen[bytes] | None) -> float:
    """CPU seconds `proc` has used so far (0 without one)."""
    if proc is None:
        return 0.0
    times = psutil.Process(proc.pid).cpu_times()
    return float(times.user + times.system)


def separate_api_env(
    stack: ExitStack, work: Path
) -> tuple[dict[str, str], subprocess.Popen[bytes]]:
    """`--separate-api`: a Prefect API in its own process (as `biobridge up`'s server is), so the
    flow process does not import Prefect's server (its ephemeral API does: ~70 MiB more RSS)."""
    from deployments.prefect_env import configure_prefect_env
    from deployments.stack import die_with_parent, wait_http_ok
    from tests.helpers import free_port

    configure_prefect_env(work / "data")
    port = free_port()
    env = os.environ | {"PREFECT_UI_ENABLED": "0"}
    args = [sys.executable, "-m", "uvicorn", "--factory", "prefect.server.api.server:create_app"]
    proc = subprocess.Popen(
        [*args, "--host", "127.0.0.1", "--port", str(port), "--log-level", "error"],
        env=env, preexec_fn=die_with_parent,
    )  # fmt: skip
    stack.callback(proc.wait, timeout=30)
    stack.callback(proc.terminate)
    url = f"http://127.0.0.1:{port}/api"
    wait_http_ok(f"{url}/health", timeout_s=120, what="the Prefect API", proc=proc)
    return os.environ | {"PREFECT_API_URL": url}, proc


def create_database(server_url: str) -> str:
    """A new empty database with a random name; returns the name."""
    name = f"bb_bench_{secrets.token_hex(4)}"
    _admin(server_url, f"CREATE DATABASE {name}")
    return name


def drop_database(server_url: str, name: str) -> None:
    _admin(server_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _admin(server_url: str, statement: str) -> None:
    with connect(server_url, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(statement)  # CREATE/DROP DATABASE refuse a transaction block


def scalar(conn: Connection, sql: str) -> Any:
    with conn.cursor() as cur:
        cur.execute(sql)
        row = cur.fetchone()
    conn.commit()
    return row[0] if row else None


def checkpoint(db_url: str) -> None:
    """Flush dirty pages so a timed phase does not pay for the previous one's writes."""
    with connect(db_url, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute("CHECKPOINT")


@dataclass(frozen=True)
class Ceiling:
    rows: int
    seconds: float
    export_seconds: float
    csv_bytes: int


def measure_ceiling(db_url: str, work: Path, *, psql: str) -> Ceiling:
    """COPY the rows of biometric_events, as CSV, into an empty copy of the table; time the COPY."""
    csv_path = work / "ceiling.csv"
    started = time.perf_counter()
    with closing(connect(db_url)) as conn:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
                "WHERE attrelid = 'public.biometric_events'::regclass AND attnum > 0 "
                "AND NOT attisdropped AND attname NOT IN ('id', 'created_at') ORDER BY attnum"
            )
            columns = cur.fetchall()
            # ADBC reads jsonb as an extension type pyarrow's CSV writer refuses: read it as text.
            select = ", ".join(
                f'"{name}"::text AS "{name}"' if kind == "jsonb" else f'"{name}"'
                for name, kind in columns
            )
            cur.execute(f"SELECT {select} FROM public.biometric_events")
            reader = cur.fetch_record_batch()
            with pa_csv.CSVWriter(csv_path, reader.schema) as writer:
                for chunk in reader:
                    writer.write_batch(chunk)
            cur.execute("CREATE TABLE public.ceiling (LIKE public.biometric_events INCLUDING ALL)")
        conn.commit()
    export_seconds = time.perf_counter() - started
    checkpoint(db_url)
    names = ", ".join(f'"{name}"' for name, _ in columns)
    copy = f"\\copy public.ceiling ({names}) FROM '{csv_path}' CSV HEADER"
    started = time.perf_counter()
    subprocess.run(
        [psql, "--no-psqlrc", "--quiet", "-v", "ON_ERROR_STOP=1", "--dbname", db_url, "-c", copy],
        check=True,
    )
    seconds = time.perf_counter() - started
    with closing(connect(db_url)) as conn:
        rows = int(scalar(conn, "SELECT count(*) FROM public.ceiling"))
    return Ceiling(rows, seconds, export_seconds, csv_path.stat().st_size)


SEED_COLUMNS = (
    "user_id",
    "device_type",
    "metric_type",
    "value",
    "timestamp",
    "metadata",
    "raw_data",
)


def measure_binary_ceiling(db_url: str, work: Path, *, psql: str) -> Ceiling:
    """Binary COPY of the seed's columns of the same rows into a table with only those columns,
    the primary key and the measurement key: the least any correct loader of these rows pays
    (jsonb parsing, two btree indexes, WAL, the identity). Only the COPY is timed."""
    path = work / "ceiling.bin"
    names = ", ".join(f'"{c}"' for c in SEED_COLUMNS)
    started = time.perf_counter()
    with closing(connect(db_url)) as conn:
        with conn.cursor() as cur:
            cur.execute(
                "CREATE TABLE public.ceiling_seed (id bigint GENERATED BY DEFAULT AS IDENTITY "
                "PRIMARY KEY, user_id text NOT NULL, device_type text NOT NULL, metric_type text "
                'NOT NULL, value double precision NOT NULL, "timestamp" timestamptz NOT NULL, '
                "metadata jsonb, raw_data jsonb)"
            )
            cur.execute(
                "CREATE UNIQUE INDEX ceiling_seed_measurement_key ON public.ceiling_seed "
                '(user_id, device_type, metric_type, "timestamp")'
            )
        conn.commit()
    export = f"\\copy (SELECT {names} FROM public.biometric_events ORDER BY id) TO '{path}' BINARY"
    _psql_run(psql, db_url, export)
    export_seconds = time.perf_counter() - started
    checkpoint(db_url)
    started = time.perf_counter()
    _psql_run(psql, db_url, f"\\copy public.ceiling_seed ({names}) FROM '{path}' BINARY")
    seconds = time.perf_counter() - started
    with closing(connect(db_url)) as conn:
        rows = int(scalar(conn, "SELECT count(*) FROM public.ceiling_seed"))
    return Ceiling(rows, seconds, export_seconds, path.stat().st_size)


def _psql_run(psql: str, db_url: str, command: str) -> None:
    subprocess.run(
        [
            psql,
            "--no-psqlrc",
            "--quiet",
            "-v",
            "ON_ERROR_STOP=1",
            "--dbname",
            db_url,
            "-c",
            command,
        ],
        check=True,
    )


def report(
    args: argparse.Namespace,
    landed: Landed,
    child: dict[str, Any],
    rows: int,
    ceilings: dict[str, Ceiling],
) -> None:
    seconds = child["seconds"]
    binary = ceilings["binary"]
    mib = 1024
    print(
        f"landed {landed.files:,} files ({landed.garmin_files:,} Garmin with {args.hr_samples} "
        f"HR samples, {landed.bytes / 2**20:,.0f} MiB) in {landed.seconds:.1f} s; "
        f"workers={args.workers} batch_files={args.batch_files}"
    )
    print()
    header = ("", "rows", "seconds", "rows/s", "files/s", "x binary", "peak RSS MiB")
    line = "{:<44} {:>10} {:>8} {:>9} {:>8} {:>8} {:>13}"
    print(line.format(*header))

    def row(label: str, secs: float, rss: str = "-") -> None:
        print(
            line.format(
                label,
                f"{rows:,}",
                f"{secs:.2f}",
                f"{rows / secs:,.0f}",
                f"{landed.files / secs:,.0f}",
                f"{binary.seconds / secs:.2f}",
                rss,
            )
        )

    row("ours: ingest flow", seconds, f"{child['rss_peak_kib'] / mib:,.0f}")
    row(f"ours: whole process ({args.runner}: imports, shutdown)", child["child_seconds"])
    row("ceiling: binary COPY, seed cols + PK + key", binary.seconds)
    row("ceiling: CSV COPY, all our columns+indexes", ceilings["csv"].seconds)
    print(
        f"\nthe child's RSS before the flow {child['rss_before_kib'] / mib:,.0f} MiB; the "
        f"ceilings' input exported in {binary.export_seconds + ceilings['csv'].export_seconds:.1f}"
        " s (not timed)"
    )
    cpu = child["cpu_seconds"]
    print(
        f"\nthe flow process used {cpu:.2f} CPU s ({1000 * cpu / landed.files:.3f} per 1k files; "
        "the Prefect API and Postgres are other processes)"
    )
    print(f"\nstage busy and thread-CPU seconds (summed over threads; wall {seconds:.2f} s):")
    for label, (secs, calls, cpu_s) in sorted(child["stages"].items(), key=lambda kv: -kv[1][0]):
        print(f"  {label:<45} {secs:8.2f} s {cpu_s:8.2f} cpu {calls:6d} calls")
    summary = {
        "files": landed.files,
        "garmin_files": landed.garmin_files,
        "rows": rows,
        "flow_s": round(seconds, 3),
        "process_s": round(child["child_seconds"], 3),
        "runner": args.runner,
        "flow_cpu_s": round(cpu, 3),
        "flow_cpu_s_per_1k_files": round(1000 * cpu / landed.files, 3),
        "binary_ceiling_s": round(binary.seconds, 3),
        "csv_ceiling_s": round(ceilings["csv"].seconds, 3),
        "ratio_binary": round(binary.seconds / seconds, 3),
        "peak_rss_mib": round(child["rss_peak_kib"] / mib),
    }
    print(api_line(child))
    print("\nRESULT " + json.dumps(summary | api_cpu(child)))


def report_memory(
    args: argparse.Namespace, landed: Landed, child: dict[str, Any], rows: int
) -> None:
    """`--memory-only`: the flow's time, CPU and peak RSS, without the ceilings."""
    seconds, cpu = child["seconds"], child["cpu_seconds"]
    print(
        f"{landed.files:,} files, {rows:,} rows: flow {seconds:.1f} s "
        f"({landed.files / seconds:,.0f} files/s), {cpu:.1f} CPU s, peak RSS "
        f"{child['rss_peak_kib'] / 1024:,.0f} MiB ({child['rss_before_kib'] / 1024:,.0f} MiB "
        f"before the flow); the whole {args.runner} process {child['child_seconds']:.1f} s"
    )
    summary = {
        "files": landed.files,
        "rows": rows,
        "flow_s": round(seconds, 3),
        "process_s": round(child["child_seconds"], 3),
        "runner": args.runner,
        "flow_cpu_s": round(cpu, 3),
        "peak_rss_mib": round(child["rss_peak_kib"] / 1024),
        "rss_before_flow_mib": round(child["rss_before_kib"] / 1024),
    }
    print(api_line(child))
    print("\nRESULT " + json.dumps(summary | api_cpu(child)))


def api_cpu(child: dict[str, Any]) -> dict[str, float]:
    """The separate Prefect API's CPU seconds during the run, when there was one."""
    return {"api_cpu_s": child["api_cpu_s"]} if "api_cpu_s" in child else {}


def api_line(child: dict[str, Any]) -> str:
    if "api_cpu_s" not in child:
        return ""
    return f"the separate Prefect API process used {child['api_cpu_s']:.2f} CPU s meanwhile"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--files", type=int, default=20_000, help="landed files")
    parser.add_argument("--hr-share", type=float, default=0.1, help="share of Garmin HR files")
    parser.add_argument("--hr-samples", type=int, default=360, help="HR samples per Garmin file")
    parser.add_argument(
        "--mix",
        choices=("hr-share", "small", "both"),
        default="hr-share",
        help="small: --hr-share 0; both: the small-file mix, then --hr-share 0.1",
    )
    parser.add_argument("--workers", type=int, default=2, help="IngestParams.workers")
    parser.add_argument("--batch-files", type=int, default=2000, help="IngestParams.batch_files")
    parser.add_argument(
        "--database-url",
        default=DEFAULT_SERVER_URL,
        help="server to create the throwaway database on",
    )
    parser.add_argument(
        "--work-dir",
        type=Path,
        default=Path("/dev/shm") if Path("/dev/shm").is_dir() else None,
        help="where the landing folder, Prefect's home and the ceiling CSV go (tmpfs: file "
        "creation on a busy disk would dominate generating the files)",
    )
    parser.add_argument(
        "--memory-only",
        action="store_true",
        help="skip the two ceilings (a run at --files 1000000 to compare peak RSS with 100000: "
        "the landing folder then takes ~8 GiB of tmpfs, give --work-dir a disk folder)",
    )
    parser.add_argument(
        "--runner",
        choices=("bare", "prefect"),
        default="bare",
        help="bare: the flow's body without Prefect, as `biobridge ingest` runs it with no "
        "server; prefect: the Prefect flow (on Prefect's ephemeral API, whose server modules "
        "the flow process imports, unless --separate-api)",
    )
    parser.add_argument(
        "--separate-api",
        action="store_true",
        help="--runner prefect against a Prefect API in its own process, as under `biobridge up`",
    )
    parser.add_argument("--_run-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.separate_api:
        args.runner = "prefect"
    if args.files < 1 or not 0 <= args.hr_share <= 1 or args.hr_samples < 0:
        parser.error("expected --files >= 1, 0 <= --hr-share <= 1 and --hr-samples >= 0")
    return args


def _psql() -> str:
    path = shutil.which("psql")
    if path is None:
        raise SystemExit("psql not found on PATH: the ceiling is measured with psql \\copy")
    return path


@dataclass
class Run:
    """The throwaway database and folder of one benchmark run."""

    server_url: str
    work: Path
    database: str

    @property
    def db_url(self) -> str:
        return url_with_database(self.server_url, self.database)


@contextmanager
def open_run(server_url: str, *, work_root: Path | None) -> Iterator[Run]:
    """A fresh database and folder, dropped afterwards; on failure the flow log is kept."""
    work = Path(tempfile.mkdtemp(prefix="bb-bench-", dir=work_root))
    database = create_database(server_url)
    try:
        yield Run(server_url, work, database)
    except BaseException:
        log = work / "ingest.log"
        if log.exists():
            kept = Path(tempfile.gettempdir()) / f"{database}-ingest.log"
            shutil.copy(log, kept)
            print(f"flow log kept at {kept}", file=sys.stderr)
        raise
    finally:
        drop_database(server_url, database)
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    args = parse_args()
    if args._run_only:
        run_only(args)
        return
    tune_allocators()  # the child runs the flow with the environment `biobridge` gives its runs
    if args.mix == "both":
        for hr_share in (0.0, 0.1):
            print(f"\n=== mix: {'small files' if hr_share == 0 else 'Garmin 10 %'} ===")
            run_one(argparse.Namespace(**{**vars(args), "hr_share": hr_share}))
        return
    if args.mix == "small":
        args.hr_share = 0.0
    run_one(args)


def run_one(args: argparse.Namespace) -> None:
    """Land, ingest, check and compare with the ceilings, for one mix."""
    psql = _psql()
    with open_run(args.database_url, work_root=args.work_dir) as run:
        print(f"database {run.database} on {display_url(args.database_url)}, folder {run.work}")
        apply_migrations(run.db_url)
        landed = land_files(
            run.work / "landing",
            files=args.files,
            hr_share=args.hr_share,
            hr_samples=args.hr_samples,
        )
        checkpoint(run.db_url)
        child = run_child(args, run.work, run.db_url)
        load = child["load"]
        with closing(connect(run.db_url)) as conn:
            rows = int(scalar(conn, "SELECT count(*) FROM public.biometric_events"))
        if rows != load["rows_inserted"] or rows != landed.expected_rows:
            raise SystemExit(
                f"row count mismatch: biometric_events has {rows:,} rows, the flow reported "
                f"{load['rows_inserted']:,} inserted, the bodies hold {landed.expected_rows:,} "
                f"(files read {load['files_read']}, quarantined {load['files_quarantined']}, "
                f"records quarantined {load['records_quarantined']})"
            )
        if load["files_read"] != landed.files:
            raise SystemExit(f"the flow read {load['files_read']} of {landed.files} files")
        if args.memory_only:
            report_memory(args, landed, child, rows)
            return
        ceilings = {
            "csv": measure_ceiling(run.db_url, run.work, psql=psql),
            "binary": measure_binary_ceiling(run.db_url, run.work, psql=psql),
        }
        for name, ceiling in ceilings.items():
            if ceiling.rows != rows:
                raise SystemExit(f"the {name} ceiling loaded {ceiling.rows:,} of {rows:,} rows")
        report(args, landed, child, rows, ceilings)


if __name__ == "__main__":
    main()
