"""A loader process: what a worker of the ingest flow does, without Prefect (run by
test_overlapping_runs). It discovers everything, loads batches with
`tasks.batch.process_batch` until nothing is pending, then prints the files it read.

    python -m tests.faults.load_child --batch-files 20 [--address-space-margin-mib 800]

With a margin, the process limits its own address space (`RLIMIT_AS`, as a container's memory
limit would) to what it holds after its imports plus the margin: a limit relative to that start
holds whatever the allocators reserve up front (with glibc's default arenas and Arrow's jemalloc
the imports alone reserve ~1.7 GiB, with the `biobridge` command's allocator settings ~0.4 GiB).
"""

from __future__ import annotations

import argparse
import re
import resource
from pathlib import Path

from landing.keys import VENDORS
from tasks.batch import BatchSpec, process_batch
from tasks.discover import discover
from tasks.runtime import database_url, landing_store
from warehouse.ledger import start_load
from warehouse.postgres import connect


def limit_address_space(margin_mib: int) -> None:
    """Cap this process's address space at its current size plus `margin_mib`."""
    status = Path("/proc/self/status").read_text()
    match = re.search(r"^VmSize:\s+(\d+) kB", status, re.MULTILINE)
    assert match is not None, "no VmSize in /proc/self/status"
    limit = (int(match.group(1)) + margin_mib * 1024) * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch-files", type=int, default=20)
    parser.add_argument("--address-space-margin-mib", type=int)
    args = parser.parse_args()
    if args.address_space_margin_mib:
        limit_address_space(args.address_space_margin_mib)
    store = landing_store()
    files_read = 0
    with connect(database_url()) as conn:
        load_id = start_load(conn, flow_run_id=None, kind="scheduled", code_version="lock-test")
        discover(conn, store, vendors=VENDORS, window=(None, None))
        spec = BatchSpec(limit=args.batch_files, vendors=VENDORS)
        while (counts := process_batch(conn, store, load_id=load_id, spec=spec)) is not None:
            files_read += counts.files_read
    print(f"files_read={files_read}", flush=True)


if __name__ == "__main__":
    main()
