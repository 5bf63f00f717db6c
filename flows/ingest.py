"""The ingest flow: landed webhook bodies become validated, flattened rows in Postgres.

The Prefect flow around the body (`flows.body`, which a bare run without Prefect executes too):
the body with Prefect tasks, then the trends artifact, the alert events and the final state.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from prefect import State, flow, get_client, get_run_logger
from prefect.runtime import flow_run
from prefect.states import Completed

from flows.alerts import emit_run_events
from flows.body import gc_frozen, run_body
from flows.params import IngestParams
from flows.report import WARNING_STATE_NAME, RunFindings
from flows.trends import publish_trends
from schemas.loads import LoadRecord
from tasks.settings import get_pipeline_settings
from tasks.steps import ingest_tasks

DEFAULT_PARAMS = IngestParams()


@flow(
    name="ingest-landed-webhooks",
    log_prints=False,
    description="Load landed webhook bodies into Postgres (validated, flattened, with lineage).",
)
def ingest(params: IngestParams = DEFAULT_PARAMS) -> Any:
    """Load what the receiver landed; returns the load record as Postgres has it.

    The run ends Completed, or "Completed with warnings" (a Completed state with that name, a
    message saying why, and tags) when it quarantined records, saw schema drift or left a
    backlog older than `BIOBRIDGE_HEALTH_MAX_PENDING_AGE_S`; the load record is its result.
    """
    with gc_frozen():
        return run_flow(params or IngestParams())


def run_flow(params: IngestParams) -> Any:
    """The body of `ingest` (`flows.body`) with Prefect tasks, then what only Prefect has: the
    trends artifact, the events automations watch, and a final state that can carry warnings."""
    load, found = run_body(ingest_tasks(get_pipeline_settings()), params)
    publish_trends()  # the ingest-trends artifact; never raises
    emit_run_events(load)  # events the automations watch; never raises
    return final_state(load, found)


def final_state(load: LoadRecord, found: RunFindings) -> State[Any]:
    """Completed, or Completed named "Completed with warnings" with the reasons as its message
    (the run list, the dashboard and automations can tell them apart); the load is the result."""
    totals = (
        f"load {load['load_id']}: {load['files_read']} files read, {load['rows_inserted']} rows "
        f"inserted, {load['rows_updated']} updated, {load['rows_unchanged']} unchanged, "
        f"{load['records_quarantined']} records quarantined"
    )
    if not found.warnings:
        return Completed(message=totals, data=load)
    tag_run(found.tags)
    return Completed(name=WARNING_STATE_NAME, message=found.message(), data=load)


def tag_run(tags: list[str]) -> None:
    """Add `tags` to this flow run (filters in the UI and automations match on them)."""
    run_id = flow_run.get_id()
    if not run_id:
        return
    try:
        with get_client(sync_client=True) as client:
            current = client.read_flow_run(UUID(run_id)).tags
            client.update_flow_run(UUID(run_id), tags=sorted({*current, *tags}))
    except Exception as exc:  # noqa: BLE001 - tags are a convenience; the state says it all
        get_run_logger().warning("could not tag the run %s: %s", tags, exc)
