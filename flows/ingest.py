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
from prefect.tasks import exponential_backoff
from pydantic import AfterValidator, BaseModel, Field, WithJsonSchema, model_validator

from flows.report import publish
from landing.keys import VENDORS
from landing.settings import get_settings
from tasks import steps
from tasks.batch import BatchSpec
from tasks.ledger import load_liveness
from tasks.load import LoadCounts
from tasks.runtime import database_url
from tasks.version import code_version


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
        default_factory=lambda: ["quarantined"],
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
def ingest(params: IngestParams | None = None) -> dict[str, object]:
    """Load what the receiver landed; returns the load record as Postgres has it."""
    params = params or IngestParams()
    logger = get_run_logger()
    settings = get_settings()
    retrying = {
        "retries": settings.io_retries,
        "retry_delay_seconds": exponential_backoff(backoff_factor=settings.retry_backoff_s),
    }
    migrate_database = steps.migrate_database.with_options(**retrying)
    open_load = steps.open_load.with_options(**retrying)
    requeue_files = steps.requeue_files.with_options(**retrying)
    discover_files = steps.discover_files.with_options(**retrying)
    load_batch = steps.load_batch.with_options(**retrying)
    close_load = steps.close_load.with_options(**retrying)
    migrate_database()
    load_id = open_load(
        kind=params.mode, flow_run_id=flow_run.get_id(), code_version=code_version()
    )
    # While this connection holds the load's liveness lock, no other run takes the load for
    # abandoned; if this process dies, the next run marks it failed.
    with load_liveness(database_url(), load_id):
        counts = LoadCounts()
        discovered = 0
        window = (params.received_from, params.received_until)
        try:
            if params.mode == "replay":
                requeue_files(
                    load_id=load_id,
                    vendors=params.vendors,
                    states=params.replay_states,
                    received_from=params.received_from,
                    received_until=params.received_until,
                )
            found = discover_files(
                vendors=params.vendors, window=None if params.mode == "scheduled" else window
            )
            discovered = sum(found.values())
            spec = BatchSpec(
                limit=params.batch_files,
                vendors=tuple(params.vendors),
                received_from=params.received_from,
                received_until=params.received_until,
            )
            load_backlog(
                load_batch, load_id=load_id, spec=spec, workers=params.workers, counts=counts
            )
        except BaseException as exc:
            load = close_load(
                load_id=load_id,
                status="failed",
                error=f"{type(exc).__name__}: {exc}",
                drift=json.dumps(dict(counts.drift)),
            )
            publish(load, counts, discovered)
            logger.error("load %d failed after %d files: %s", load_id, counts.files_read, exc)
            raise
        load = close_load(
            load_id=load_id, status="completed", error=None, drift=json.dumps(dict(counts.drift))
        )
        publish(load, counts, discovered)
        logger.info(
            "load %d: %d files read, %d loaded, %d quarantined, %d deferred; rows %d inserted, "
            "%d updated, %d unchanged; %d records quarantined",
            load_id,
            load["files_read"],
            load["files_loaded"],
            load["files_quarantined"],
            load["files_deferred"],
            load["rows_inserted"],
            load["rows_updated"],
            load["rows_unchanged"],
            load["rows_quarantined"],
        )
        return load
