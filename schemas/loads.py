"""The counts of a load: one name per quantity, the same in code, in reports and in
`biobridge.loads` (its columns are `LOAD_TOTALS`)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypedDict

LOAD_TOTALS: tuple[str, ...] = (
    "files_read",
    "files_loaded",
    "files_quarantined",
    "files_deferred",
    "rows_inserted",
    "rows_updated",
    "rows_unchanged",
    "rows_removed",
    "records_quarantined",
)
"""The counts a load record sums over its batches (columns of `biobridge.loads`)."""


FETCH_OUTCOMES: tuple[str, ...] = (
    "fetched",
    "resolved_empty",
    "deleted",
    "rate_limited",
    "retry_later",
    "needs_reauth",
    "failed",
)
"""Where a notification can end a run (the states of `biobridge.notifications` besides pending)."""


@dataclass
class FetchCounts:
    """What the fetch stage did in one run: notifications by outcome, documents, requests."""

    notifications_claimed: int = 0
    fetched: int = 0
    resolved_empty: int = 0
    deleted: int = 0
    rate_limited: int = 0
    retry_later: int = 0
    needs_reauth: int = 0
    failed: int = 0
    documents_landed: int = 0
    rows_marked_deleted: int = 0
    token_refreshes: int = 0
    connections_marked: int = 0
    seconds_fetching: float = 0.0
    reasons: Counter[str] = field(default_factory=Counter)  # "<state>: <reason>" -> notifications

    def count(self, outcome: str) -> None:
        """One more notification ended the run in `outcome` (one of `FETCH_OUTCOMES`)."""
        if outcome not in FETCH_OUTCOMES:
            raise ValueError(
                f"outcome: expected one of {', '.join(FETCH_OUTCOMES)}, found {outcome!r}"
            )
        setattr(self, outcome, getattr(self, outcome) + 1)

    def as_dict(self) -> dict[str, float | int]:
        """Every count by name (what `biobridge.loads.fetch_counts` stores)."""
        return {
            name: getattr(self, name) for name in self.__dataclass_fields__ if name != "reasons"
        }

    def summary(self) -> str:
        """One log line."""
        return ", ".join(f"{k} {v}" for k, v in self.as_dict().items())


@dataclass
class LoadCounts:
    """What one batch (or a whole run, summed) did; the numbers come from Postgres itself."""

    files_read: int = 0
    files_loaded: int = 0
    files_quarantined: int = 0
    files_deferred: int = 0
    rows_staged: int = 0
    rows_inserted: int = 0
    rows_updated: int = 0
    rows_unchanged: int = 0
    rows_removed: int = 0
    """Rows a re-derived delivery no longer produces (marked deleted, see tasks/load.py)."""
    records_quarantined: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    drift: Counter[str] = field(default_factory=Counter)
    lag_seconds_max: float = 0.0
    fetch: FetchCounts = field(default_factory=FetchCounts)  # the run's fetch stage (not summed)

    def add(self, other: LoadCounts) -> None:
        """Accumulate another batch's counts into this one."""
        for name in (*LOAD_TOTALS, "rows_staged"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.reasons.update(other.reasons)
        self.drift.update(other.drift)
        self.lag_seconds_max = max(self.lag_seconds_max, other.lag_seconds_max)

    def totals(self) -> tuple[int, ...]:
        """The `LOAD_TOTALS` values, in that order."""
        return tuple(int(getattr(self, name)) for name in LOAD_TOTALS)

    def summary(self) -> str:
        """One log line: every total by name."""
        return ", ".join(f"{name} {getattr(self, name)}" for name in LOAD_TOTALS)


class LoadRecord(TypedDict):
    """A row of `biobridge.loads`, as `finish_load` returns it and the ingest flow's result."""

    load_id: int
    flow_run_id: str | None
    kind: str
    started_at: datetime
    finished_at: datetime | None
    status: str
    files_read: int
    files_loaded: int
    files_quarantined: int
    files_deferred: int
    rows_inserted: int
    rows_updated: int
    rows_unchanged: int
    rows_removed: int
    records_quarantined: int
    drift: object
    code_version: str
    error: str | None
    fetch_counts: object
