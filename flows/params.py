"""The ingest flow's parameters: what one run should do (a form in the Prefect UI).

Apart from the flow so that `biobridge ingest` can check its options and submit a run to the
running stack without importing the flow (Polars, Arrow, ADBC, the tasks: seconds and ~100 MiB).
"""

from __future__ import annotations

from datetime import datetime
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
