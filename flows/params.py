"""The ingest flow's parameters: what one run should do (a form in the Prefect UI).

Apart from the flow so that `biobridge ingest` can check its options and submit a run to the
running stack without importing the flow (Polars, Arrow, ADBC, the tasks: seconds and ~100 MiB).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, Field, WithJsonSchema, model_validator

from landing.keys import VENDORS


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
MAX_CHUNKS = 20_000
"""A chunked run's chunks (window / chunk_hours x vendors), at most."""


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
    chunk_hours: int | None = Field(
        default=None,
        ge=1,
        le=24 * 31,
        description=(
            "Backfill/replay of a long window: split it into chunks of this many hours per "
            "vendor (24: a chunk per day and vendor). Chunk state is kept in Postgres: run the "
            "same parameters again after a stop or crash and it resumes with the chunks not done. "
            "Needs received_from and received_until."
        ),
    )
    chunk_parallel: int = Field(
        default=2,
        ge=1,
        le=16,
        description=(
            "Chunked runs: chunks loaded in parallel (each loads its batches one after another, "
            "so workers does not apply)."
        ),
    )

    @model_validator(mode="after")
    def _window_is_ordered(self) -> IngestParams:
        if self.received_from and self.received_until and self.received_from >= self.received_until:
            raise ValueError("received_from must be before received_until")
        return self

    @model_validator(mode="after")
    def _chunks_need_a_window(self) -> IngestParams:
        if self.chunk_hours is None:
            return self
        if self.mode == "scheduled":
            raise ValueError("chunk_hours is for backfill and replay: add mode backfill or replay")
        if self.received_from is None or self.received_until is None:
            raise ValueError("chunk_hours needs a window: give received_from and received_until")
        chunks = (self.received_until - self.received_from) / timedelta(hours=self.chunk_hours)
        if chunks * len(self.vendors) > MAX_CHUNKS:
            raise ValueError(
                f"{int(chunks) * len(self.vendors)} chunks is more than {MAX_CHUNKS}: "
                "raise chunk_hours or shorten the window"
            )
        return self
