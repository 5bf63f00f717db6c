"""A loader that SIGKILLs itself at one exact point of one batch (run by test_ingest_sigkill).

    python -m tests.faults.batch_child --point copy --batch 3 --batch-files 50

It does what a run of the ingest flow does, without Prefect: open a load record, discover
everything, then load batches with `tasks.batch.process_batch` until nothing is pending. Batch
number `--batch` (1-based) dies at `--point`:

- read:          in the middle of fetching the batch's objects (after half of them were read);
- copy:          in the middle of the COPY into the staging table (half the rows sent);
- upsert:        after the upsert into biometric_events, before the quarantine and ledger writes;
- before_commit: everything written in the transaction, `commit()` not called;
- after_commit:  right after `commit()` returned.

The hooks live here, in the test's child process only: production code has no fault switch.
"""

from __future__ import annotations

import argparse
import os
import signal
import threading
from typing import Any

import pyarrow as pa
from adbc_driver_manager import dbapi as adbc_dbapi

from landing.keys import VENDORS
from tasks import batch as batch_module
from tasks.batch import BatchSpec, process_batch
from tasks.discover import discover
from tasks.runtime import database_url, landing_store
from warehouse.ledger import start_load
from warehouse.postgres import connect

POINTS = ("read", "copy", "upsert", "before_commit", "after_commit")


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


class Armed:
    """Whether the current batch is the one that dies."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.batch = 0

    @property
    def now(self) -> bool:
        return self.batch == self.target


def install(point: str, armed: Armed) -> None:
    """Wrap the one function whose exact moment `point` names."""
    if point == "read":
        real_fetch = batch_module.fetch_objects

        def fetch(store: Any, keys: Any, *args: Any, **kwargs: Any) -> Any:
            if not armed.now:
                return real_fetch(store, keys, *args, **kwargs)
            count, lock, half = [0], threading.Lock(), max(1, len(keys) // 2)

            class Dying:
                """The real store, except that the read after half the batch never returns."""

                def __getattr__(self, name: str) -> Any:
                    return getattr(store, name)

                def get_many(self, keys: Any) -> Any:
                    got = []
                    for key in keys:
                        with lock:
                            count[0] += 1
                            if count[0] > half:
                                die()
                        got += store.get_many([key])
                    return got

            return real_fetch(Dying(), keys, *args, **kwargs)

        batch_module.fetch_objects = fetch
        return

    real_ingest = adbc_dbapi.Cursor.adbc_ingest
    real_execute = adbc_dbapi.Cursor.execute
    real_commit = adbc_dbapi.Connection.commit

    def ingest(self: Any, table_name: str, data: Any, *args: Any, **kwargs: Any) -> Any:
        if point == "copy" and armed.now and table_name == "bb_stage":
            batches = data.to_batches(max_chunksize=max(1, data.num_rows // 4))

            def stream() -> Any:
                for i, b in enumerate(batches):
                    if i == 2:
                        die()  # two of four chunks are on the wire: the COPY is in progress
                    yield b

            data = pa.RecordBatchReader.from_batches(data.schema, stream())
        return real_ingest(self, table_name, data, *args, **kwargs)

    def execute(self: Any, operation: Any, *args: Any, **kwargs: Any) -> Any:
        result = real_execute(self, operation, *args, **kwargs)
        if point == "upsert" and armed.now and "INSERT INTO public.biometric_events" in operation:
            self.fetchone()  # the upsert has run on the server
            die()
        return result

    def commit(self: Any) -> None:
        if point == "before_commit" and armed.now:
            die()
        real_commit(self)
        if point == "after_commit" and armed.now:
            die()

    adbc_dbapi.Cursor.adbc_ingest = ingest
    adbc_dbapi.Cursor.execute = execute
    adbc_dbapi.Connection.commit = commit


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--point", choices=POINTS, required=True)
    parser.add_argument("--batch", type=int, required=True, help="1-based batch that dies")
    parser.add_argument("--batch-files", type=int, default=50)
    args = parser.parse_args()

    armed = Armed(args.batch)
    store = landing_store()
    with connect(database_url()) as conn:
        load_id = start_load(conn, flow_run_id=None, kind="scheduled", code_version="fault-test")
        discover(conn, store, vendors=VENDORS, window=(None, None))
        spec = BatchSpec(limit=args.batch_files, vendors=VENDORS)
        install(args.point, armed)
        while True:
            armed.batch += 1
            if process_batch(conn, store, load_id=load_id, spec=spec) is None:
                break
    raise SystemExit(f"batch {args.batch} was never reached: nothing was killed")


if __name__ == "__main__":
    main()
