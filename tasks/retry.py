"""Which failures are worth retrying: transient I/O yes, anything about the data no."""

from __future__ import annotations

from typing import Any

from landing.store import StoreUnavailable
from warehouse.postgres import is_transient


def is_retryable(exc: BaseException) -> bool:
    """True for a store or database failure that may pass (outage, throttling, lost connection)."""
    return isinstance(exc, StoreUnavailable) or is_transient(exc)


def retry_if_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect `retry_condition_fn`: retry only transient failures, fail fast on permanent ones."""
    try:
        state.result(raise_on_failure=True)
    except Exception as exc:  # noqa: BLE001 - classifying whatever the task raised is the point
        return is_retryable(exc)
    return False
