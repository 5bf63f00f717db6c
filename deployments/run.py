"""Run one ingest flow run in this process and print what it did."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from deployments.prefect_env import configure_prefect_env
from landing.settings import get_settings
from schemas.loads import LOAD_TOTALS, LoadRecord

SUMMARY_FIELDS = tuple((name.replace("_", " "), name) for name in LOAD_TOTALS)


def format_load(load: LoadRecord) -> str:
    """The load record as the lines `biobridge ingest` prints."""
    lines = [f"load {load['load_id']}: {load['status']}"]
    lines += [f"  {label:<20} {load[key]}" for label, key in SUMMARY_FIELDS]  # type: ignore[literal-required]
    if load.get("error"):
        lines.append(f"  error: {load['error']}")
    return "\n".join(lines)


def run_ingest(
    *,
    mode: str,
    vendors: Sequence[str],
    received_from: datetime | None,
    received_until: datetime | None,
    replay_states: Sequence[str],
    batch_files: int,
    workers: int,
) -> int:
    """Run the flow once; 0 when it completed, 1 when it failed (the reason is printed)."""
    configure_prefect_env(get_settings().data_dir)
    from flows.ingest import IngestParams, ingest

    params = IngestParams(
        mode=mode,  # type: ignore[arg-type]
        vendors=list(vendors),
        received_from=received_from,
        received_until=received_until,
        replay_states=list(replay_states),  # type: ignore[arg-type]
        batch_files=batch_files,
        workers=workers,
    )
    state = ingest(params, return_state=True)
    if state.is_completed():
        print(format_load(state.result()))
        return 0
    try:
        state.result()
    except Exception as exc:  # noqa: BLE001 - printed for the operator, exit code says it failed
        print(f"ingest failed: {type(exc).__name__}: {exc}")
    return 1
