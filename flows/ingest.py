"""The ingest flow: landed webhook bodies become validated, flattened rows in Postgres.

It only orchestrates: migrate, open a load record, (requeue for a replay,) discover new files,
load batches on `workers` parallel connections until nothing is left to claim, close the load
record with its counts, and publish the report. Every stage lives in `tasks/`.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Literal

from prefect import Task, flow, get_run_logger
from prefect.futures import as_completed, wait
from prefect.runtime import flow_run
from pydantic import AfterValidator, BaseModel, Field, WithJsonSchema, model_validator

from flows.report import publish
from flows.version import code_version
from landing.keys import VENDORS
from schemas.loads import LOAD_TOTALS, LoadCounts, LoadRecord
from tasks.batch import BatchSpec
from tasks.runtime import database_url
from tasks.settings import get_pipeline_settings
from tasks.steps import IngestTasks, ingest_tasks
from warehouse.ledger import load_liveness


def _known_vendor(name: str) -> str:
    if name not in VENDORS:
        raise ValueError(f"unknown vendor {name!r}: expected one of {', '.join(VENDORS)}")
    return name


Vendor = Annotated[
    str,
    AfterValidator(_known_vendor),
    WithJsonSchema({"type": "string", "enum": list(VENDORS)}),
]
"""A routed vendor (`landing.keys.VENDORS`), a drop-down in the Prefect UI."""
FileState = Literal["loaded", "quarantined", "deferred"]


class IngestParams(BaseModel):
    """What one run should do. Rendered as a form in the Prefect UI."""

    mode: Literal["scheduled", "backfill", "replay"] = Field(
        default="scheduled",
        description=(
            "scheduled: list new partitions and load what is pending. backfill: list the "
            "whole received window (or everything) and load what is new. replay: load files "
            "of the window again (e.g. quarantined ones after a fix)."
        ),
    )
    vendors: list[Vendor] = Field(default_factory=lambda: list(VENDORS), min_length=1)
    received_from: datetime | None = Field(
        default=None, description="Backfill/replay: files received at or after this instant."
    )
    received_until: datetime | None = Field(
        default=None, description="Backfill/replay: files received before this instant."
    )
    replay_states: list[FileState] = Field(
        default_factory=lambda: list[FileState](["quarantined"]),
        description="Replay: which ledger states go back to pending.",
    )
    batch_files: int = Field(default=2000, ge=1, le=50_000, description="Files per transaction.")
    workers: int = Field(default=2, ge=1, le=16, description="Batches loaded in parallel.")

    @model_validator(mode="after")
    def _window_is_ordered(self) -> IngestParams:
        if self.received_from and self.received_until and self.received_from >= self.received_until:
            raise ValueError("received_from must be before received_until")
        return self


def load_backlog(
    load_batch: Task[..., LoadCounts | None],
    *,
    load_id: int,
    spec: BatchSpec,
    workers: int,
    counts: LoadCounts,
) -> None:
    """Keep `workers` batches in flight until nothing is left to claim; add up their counts.

    A sliding window, not lock-step rounds: as soon as one batch commits the next is claimed,
    so one worker reads and flattens while the other's upsert keeps Postgres busy.
    """
    in_flight = [load_batch.submit(load_id=load_id, spec=spec) for _ in range(workers)]
    try:
        while in_flight:
            finished = next(as_completed(in_flight))
            in_flight.remove(finished)
            result = finished.result()
            if result is not None:
                counts.add(result)
                in_flight.append(load_batch.submit(load_id=load_id, spec=spec))
    finally:
        wait(in_flight)  # never close the load record while a batch may still commit


@flow(name="ingest-landed-webhooks", log_prints=False)
def ingest(params: IngestParams | None = None) -> LoadRecord:
    """Load what the receiver landed; returns the load record as Postgres has it."""
    params = params or IngestParams()
    steps = ingest_tasks(get_pipeline_settings())
    steps.migrate_database()
    load_id = steps.open_load(
        kind=params.mode, flow_run_id=flow_run.get_id(), code_version=code_version()
    )
    # While this connection holds the load's liveness lock, no other run takes the load for
    # abandoned; if this process dies, the next run marks it failed.
    with load_liveness(database_url(), load_id):
        counts = LoadCounts()
        discovered = 0
        try:
            counts.fetch = steps.fetch_notifications(load_id=load_id, vendors=params.vendors)
            discovered = find_files(steps, params, load_id=load_id)
            spec = BatchSpec(
                limit=params.batch_files,
                vendors=tuple(params.vendors),
                received_from=params.received_from,
                received_until=params.received_until,
            )
            load_backlog(
                steps.load_batch, load_id=load_id, spec=spec, workers=params.workers, counts=counts
            )
        except BaseException as exc:
            close_and_report(steps, load_id, counts, discovered, error=exc)
            raise
        return close_and_report(steps, load_id, counts, discovered, error=None)


def find_files(steps: IngestTasks, params: IngestParams, *, load_id: int) -> int:
    """Requeue the window's files for a replay, then discover new ones; how many were new."""
    if params.mode == "replay":
        steps.requeue_files(
            load_id=load_id,
            vendors=params.vendors,
            states=params.replay_states,
            received_from=params.received_from,
            received_until=params.received_until,
        )
    window = (params.received_from, params.received_until)
    found = steps.discover_files(
        vendors=params.vendors, window=None if params.mode == "scheduled" else window
    )
    return sum(found.values())


def close_and_report(
    steps: IngestTasks,
    load_id: int,
    counts: LoadCounts,
    discovered: int,
    *,
    error: BaseException | None,
) -> LoadRecord:
    """Close the load record (completed, or failed with `error`), publish and log the report."""
    load = steps.close_load(
        load_id=load_id,
        status="completed" if error is None else "failed",
        error=None if error is None else f"{type(error).__name__}: {error}",
        drift=json.dumps(dict(counts.drift)),
    )
    publish(load, counts, discovered)
    logger = get_run_logger()
    if error is not None:
        logger.error("load %d failed after %d files: %s", load_id, counts.files_read, error)
    else:
        totals = ", ".join(f"{name} {load[name]}" for name in LOAD_TOTALS)  # type: ignore[literal-required]
        logger.info("load %d: %s", load_id, totals)
    return load
