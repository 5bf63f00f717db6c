"""The write alone (issue 11 item 2, issue 14 item 5): staged rows into `biometric_events`.

    uv run python benchmarks/write.py [--rows 14000] [--rounds 5] [--existing 0]
        [--variants before,after] [--database-url URL]

Two variants, each in a throwaway database of its own (dropped at the end, also on failure):

- `before`: migrations up to 0007 (the table unpartitioned) and the write as it was before
  re-derivation: INSERT ... ON CONFLICT DO NOTHING, then UPDATE where the delivery is newer;
- `after`: every migration (month partitions) and `tasks.load.write_rows`.

`--existing N` first fills each table with N rows spread over the 12 months before the
measured batches, as a table in service holds them (then ANALYZE and CHECKPOINT). Each round
then, per variant (the order alternates between rounds, so drift in the machine's load hits both):

- `fresh`: `--rows` new measurements of this month (a small-file batch: 7 rows per file,
  2,000 files), staged in a temporary table (not timed), written and committed (timed; for
  `after` that includes making sure the month's partition exists);
- `reload`: the same batch again, the same files (every row conflicts and is identical: what a
  crash-recovery reload or a replay after no fix costs).

It prints the median and the spread (min-max) of rows/s per variant and case, the Postgres
backend's CPU time per row (from /proc: the server must be local), and one `RESULT {json}` line.
Time is wall time of the write and its commit; on a shared machine the CPU time is the steadier
figure. Compare variants only within one run.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa

from schemas.staging import FILE_RESULT, KEY_COLUMNS, STAGED_ROW
from tasks.load import UPSERT_LOCK, ensure_partitions, write_rows
from warehouse.migrate import apply_migrations, discover_migrations
from warehouse.postgres import Connection, connect, url_with_database

DEFAULT_SERVER_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
METRICS = ("readiness_score", "sleep_score", "hrv", "temp", "rhr", "resp", "activity")
NOW = datetime.now(UTC).replace(day=2, hour=0, minute=0, second=0, microsecond=0)

_OLD_COLUMNS = [c for c in STAGED_ROW.names if c != "delivery_seq"]
_OLD_SQL = ", ".join(f'"{c}"' for c in _OLD_COLUMNS)
_OLD_VALUES = ", ".join(f's."{c}"' + ("::jsonb" if c == "metadata" else "") for c in _OLD_COLUMNS)
_OLD_KEY = " AND ".join(f't."{c}" = s."{c}"' for c in KEY_COLUMNS)
OLD_INSERT = (
    f"INSERT INTO public.biometric_events ({_OLD_SQL}) SELECT {_OLD_VALUES} "
    "FROM pg_temp.bb_stage AS s "
    'ON CONFLICT (user_id, device_type, metric_type, "timestamp") DO NOTHING'
)
OLD_UPDATE = f"""
UPDATE public.biometric_events AS t
SET value = s.value, unit = s.unit, metadata = s.metadata::jsonb,
    received_at = s.received_at, source_key = s.source_key,
    record_index = s.record_index, load_id = s.load_id
FROM pg_temp.bb_stage AS s
WHERE {_OLD_KEY}
  AND (s.received_at, s.source_key)
      > (coalesce(t.received_at, '-infinity'::timestamptz), coalesce(t.source_key, ''))
"""

FILL = """
INSERT INTO public.biometric_events (user_id, device_type, metric_type, value, "timestamp",
    unit, received_at, source_key, record_index, load_id, delivery_seq)
SELECT 'fill' || (n / 7 % 20000), 'oura', 'm' || (n % 7), n,
       $2::timestamptz - (n / 140000) * interval '5 days',
       'x', $2::timestamptz, 'raw/fill/' || (n / 7), n % 7, 1, n / 7
FROM generate_series(0, $1::bigint - 1) AS n
"""


def write_before(conn: Connection, stage: pa.Table, url: str) -> None:
    with conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock($1)", (UPSERT_LOCK,))
        cur.fetchall()
        cur.execute(OLD_INSERT)
        if int(cur.rowcount) < stage.num_rows:
            cur.execute(OLD_UPDATE)


def write_after(conn: Connection, stage: pa.Table, url: str) -> None:
    ensure_partitions(url, stage)
    with conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock($1)", (UPSERT_LOCK,))
        cur.fetchall()
    write_rows(conn, load_id=1, rows_staged=stage.num_rows)


WRITERS = {"before": write_before, "after": write_after}


def batch(n_rows: int, round_no: int, seq0: int) -> tuple[pa.Table, pa.Table]:
    """`n_rows` new measurements (7 per file) stamped this month, and the files' results."""
    files = (n_rows + 6) // 7
    keys = [f"raw/oura/bench/r{round_no}/f{i:06d}.json" for i in range(files)]
    at = NOW + timedelta(days=round_no % 20, seconds=round_no)
    stage = pa.table(
        {
            "user_id": [f"u{i // 7 % 5000}-{i // 35000}" for i in range(n_rows)],
            "device_type": ["oura"] * n_rows,
            "metric_type": [METRICS[i % 7] for i in range(n_rows)],
            "value": [float(i) for i in range(n_rows)],
            "unit": ["x"] * n_rows,
            "timestamp": [at + timedelta(seconds=i // 7) for i in range(n_rows)],
            "metadata": ['{"source_field": "f"}'] * n_rows,
            "received_at": [at] * n_rows,
            "source_key": [keys[i // 7] for i in range(n_rows)],
            "record_index": [0] * n_rows,
            "load_id": [1] * n_rows,
            "delivery_seq": [seq0 + i // 7 for i in range(n_rows)],
        }
    )
    results = pa.table(
        {
            "object_key": keys,
            "state": ["loaded"] * files,
            "rows_loaded": [7] * files,
            "records_quarantined": [0] * files,
            "size_bytes": [300] * files,
            "sha256": ["0" * 64] * files,
            "delivery_id": ["b"] * files,
            "note": [None] * files,
        }
    )
    return stage.cast(STAGED_ROW), results.cast(FILE_RESULT)


CPU: dict[tuple[str, str], list[float]] = {}


def backend_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a (local) Postgres backend so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def timed_write(url: str, variant: str, case: str, stage: pa.Table, results: pa.Table) -> float:
    with connect(url) as conn:
        with conn.cursor() as cur:  # what stage_batch does, but the partitions (timed below)
            cur.adbc_ingest("bb_stage", stage, mode="replace", temporary=True)
            cur.adbc_ingest("bb_file_results", results, mode="replace", temporary=True)
            cur.execute("ANALYZE pg_temp.bb_file_results")
        conn.commit()
        with conn.cursor() as cur:
            cur.execute("SELECT pg_backend_pid()")
            (pid,) = cur.fetchone() or (0,)
        cpu = backend_cpu_s(pid)
        start = time.perf_counter()
        WRITERS[variant](conn, stage, url)
        conn.commit()
        took = time.perf_counter() - start
        CPU[variant, case].append(backend_cpu_s(pid) - cpu)
        # The files are now "loaded": a reload probes their rows (the `after` removal step).
        with conn.cursor() as cur:
            cur.execute(
                "INSERT INTO biobridge.landed_files (object_key, vendor, received_at, state, "
                "load_id) SELECT object_key, 'oura', now(), 'loaded', 1 "
                "FROM pg_temp.bb_file_results ON CONFLICT DO NOTHING"
            )
        conn.commit()
    return took


def prepare(server_url: str, variant: str, existing: int, tmp: Path) -> tuple[str, str]:
    name = f"bb_bench_write_{secrets.token_hex(4)}"
    admin(server_url, f"CREATE DATABASE {name}")
    url = url_with_database(server_url, name)
    folder = tmp / variant
    folder.mkdir()
    for m in discover_migrations():
        if variant == "after" or m.version < 8:
            shutil.copy(m.path, folder / m.file_name)
    apply_migrations(url, folder=folder)
    with connect(url) as conn, conn.cursor() as cur:
        cur.execute("INSERT INTO biobridge.loads (code_version) VALUES ('bench')")
        if existing:
            if variant == "after":
                cur.execute(
                    "SELECT biobridge.ensure_event_partitions(ARRAY(SELECT $1::timestamptz - "
                    "n * interval '1 month' FROM generate_series(0, 13) AS n))",
                    (NOW,),
                )
            started = time.perf_counter()
            cur.execute(FILL, (existing, NOW - timedelta(days=3)))
            conn.commit()
            print(f"{variant}: {existing} rows filled in {time.perf_counter() - started:.0f} s")
        conn.commit()
    with connect(url, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute("VACUUM ANALYZE public.biometric_events")
        cur.execute("CHECKPOINT")
    return name, url


def admin(server_url: str, statement: str) -> None:
    with connect(server_url, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(statement)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rows", type=int, default=14_000, help="rows per batch (7 per file)")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--existing", type=int, default=0, help="rows in the table before measuring")
    p.add_argument("--variants", default="before,after")
    p.add_argument("--database-url", default=DEFAULT_SERVER_URL)
    args = p.parse_args(argv)
    variants = args.variants.split(",")
    for v in variants:
        CPU[v, "fresh"], CPU[v, "reload"] = [], []
    timings: dict[str, dict[str, list[float]]] = {v: {"fresh": [], "reload": []} for v in variants}
    databases: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        try:
            urls = {}
            for v in variants:
                name, urls[v] = prepare(args.database_url, v, args.existing, Path(tmp))
                databases.append(name)
            for r in range(args.rounds):
                order = variants if r % 2 == 0 else variants[::-1]
                for v in order:
                    stage, results = batch(args.rows, r, seq0=10**9 + r * args.rows)
                    for case in ("fresh", "reload"):
                        took = timed_write(urls[v], v, case, stage, results)
                        timings[v][case].append(took)
        finally:
            for name in databases:
                admin(args.database_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    result: dict[str, Any] = {"rows": args.rows, "existing": args.existing}
    for v in variants:
        for case, seconds in timings[v].items():
            rates = sorted(args.rows / s for s in seconds)
            cpu = statistics.median(CPU[v, case])
            result[f"{v}_{case}_rows_per_s"] = round(statistics.median(rates))
            result[f"{v}_{case}_backend_cpu_us_per_row"] = round(cpu / args.rows * 1e6, 2)
            print(
                f"{v:6} {case:6}: {statistics.median(rates):9.0f} rows/s "
                f"(min {rates[0]:.0f}, max {rates[-1]:.0f}, {len(rates)} batches of {args.rows}); "
                f"backend CPU {cpu / args.rows * 1e6:.1f} us/row (median)"
            )
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()
