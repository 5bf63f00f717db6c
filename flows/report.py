"""What a run tells ops: one table artifact with the counts and a markdown note with the why."""

from __future__ import annotations

from typing import Any

from prefect.artifacts import create_markdown_artifact, create_table_artifact

from schemas.loads import LoadCounts, LoadRecord


def summary_rows(load: LoadRecord, counts: LoadCounts, discovered: int) -> list[dict[str, Any]]:
    """The counts of a run as (measure, value) rows; file and row numbers come from Postgres."""
    return [
        {"measure": "load id", "value": load["load_id"]},
        {"measure": "status", "value": load["status"]},
        {"measure": "files discovered", "value": discovered},
        {"measure": "files read", "value": load["files_read"]},
        {"measure": "files loaded", "value": load["files_loaded"]},
        {
            "measure": "files quarantined (whole or all records bad)",
            "value": load["files_quarantined"],
        },
        {
            "measure": "files deferred (vendor pointers: the fetch stage resolves them)",
            "value": load["files_deferred"],
        },
        {"measure": "rows inserted", "value": load["rows_inserted"]},
        {"measure": "rows updated (newer delivery)", "value": load["rows_updated"]},
        {"measure": "rows unchanged (already loaded)", "value": load["rows_unchanged"]},
        {"measure": "records quarantined", "value": load["records_quarantined"]},
        {"measure": "schema drift keys (not loaded)", "value": sum(counts.drift.values())},
        {"measure": "max lag receipt to load (s)", "value": round(counts.lag_seconds_max, 1)},
        *(
            {"measure": f"fetch: {name.replace('_', ' ')}", "value": value}
            for name, value in counts.fetch.as_dict().items()
        ),
    ]


def markdown_report(load: LoadRecord, counts: LoadCounts, *, top: int = 10) -> str:
    """Top quarantine reasons and drift keys, so the UI says why, not only how many."""
    lines = [f"# Load {load['load_id']}: {load['status']}", ""]
    if load.get("error"):
        lines += [f"**Error:** {load['error']}", ""]
    lines += ["## Top quarantine reasons", ""]
    if counts.reasons:
        lines += ["| reason | records |", "|---|---|"]
        lines += [f"| {r} | {n} |" for r, n in counts.reasons.most_common(top)]
    else:
        lines.append("none")
    lines += ["", "## Vendor notifications not fetched (state: reason)", ""]
    if counts.fetch.reasons:
        lines += ["| state: reason | notifications |", "|---|---|"]
        lines += [f"| {r} | {n} |" for r, n in counts.fetch.reasons.most_common(top)]
    else:
        lines.append("none")
    lines += ["", "## Schema drift (keys not in the catalogue, not loaded)", ""]
    if counts.drift:
        lines += ["| key | count |", "|---|---|"]
        lines += [f"| {k} | {n} |" for k, n in counts.drift.most_common(top)]
    else:
        lines.append("none")
    return "\n".join(lines)


def publish(load: LoadRecord, counts: LoadCounts, discovered: int) -> None:
    """Create the run's artifacts in Prefect (shown on the flow run page)."""
    create_table_artifact(
        key="ingest-summary",
        table=summary_rows(load, counts, discovered),
        description=f"Load {load['load_id']}: what this run read, loaded and rejected",
    )
    create_markdown_artifact(
        key="ingest-reasons",
        markdown=markdown_report(load, counts),
        description="Why records were quarantined, and which keys drifted",
    )
