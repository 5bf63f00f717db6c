"""Micro-benchmark of `plan_batch` alone (parse, flatten, validate, dedupe; no I/O) on small files.

Generic-shape bodies as `benchmarks/ingest.py --mix small` lands them (7 metrics each), already
read: prints the best process-CPU time of a batch, per file, and the Python heap peak
(tracemalloc) of one batch. Compare two trees in one run by pointing PYTHONPATH at each.

    uv run python benchmarks/plan.py [--files 2000] [--repeat 7]
"""

from __future__ import annotations

import argparse
import gc
import time
import tracemalloc
from datetime import UTC, datetime, timedelta

from benchmarks.ingest import GENERIC_VENDORS, Templates, generic_body
from landing.store import ObjectMeta
from tasks.batch import plan_batch
from tasks.read import LandedFile


def small_files(n: int) -> list[LandedFile]:
    t = Templates.load()
    now = datetime.now(UTC)
    files = []
    for i in range(n):
        body = generic_body(t, i)
        vendor = GENERIC_VENDORS[i % 2]
        meta = ObjectMeta.of_body(
            body,
            received_at=now - timedelta(seconds=n - i),
            vendor=vendor,
            content_type="application/json",
            delivery_id=f"bench-{i}",
        )
        files.append(LandedFile(key=f"{vendor}/2026/12/02/14/{i:08d}.json", body=body, meta=meta))
    return files


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    files = small_files(args.files)
    order = {f.key: n for n, f in enumerate(files, start=1)}
    plan = plan_batch(files, load_id=1, delivery_order=order)  # warm-up: imports, first queries
    best = float("inf")
    for _ in range(args.repeat):
        gc.collect()
        started = time.process_time()
        plan = plan_batch(files, load_id=1, delivery_order=order)
        best = min(best, time.process_time() - started)
    gc.collect()
    tracemalloc.start()
    plan_batch(files, load_id=1, delivery_order=order)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(
        f"plan_batch: {args.files:,} files -> {plan.stage.num_rows:,} rows, best of "
        f"{args.repeat}: {best * 1e3:.1f} ms CPU = {best / args.files * 1e6:.1f} us/file; "
        f"Python heap peak {peak / 2**20:.2f} MiB = {peak / args.files:,.0f} B/file"
    )


if __name__ == "__main__":
    main()
