"""A loader process: what a worker of the ingest flow does, without Prefect (run by
test_overlapping_runs). It discovers everything, loads batches with
`tasks.batch.process_batch` until nothing is pending, then prints the files it read.

    python -m tests.faults.load_child --batch-files 20
"""

from __future__ import annotations

import argparse

from landing.keys import VENDORS
from tasks.batch import BatchSpec, process_batch
from tasks.discover import discover
from tasks.runtime import database_url, landing_store
from warehouse.ledger import start_load
from warehouse.postgres import connect


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch-files", type=int, default=20)
    args = parser.parse_args()
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
