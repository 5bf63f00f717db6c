"""What a run tells ops: a table with the counts, a markdown note naming vendors, files and reasons,
and the run's final state (a plain Completed, or "Completed with warnings" saying why).

Under Prefect they are artifacts, keyed so that the Artifacts page keeps a history per key:
- `ingest-summary`: the counts of every run that read something (empty runs publish nothing, so
  the latest artifact is never an empty minute);
- `ingest-reasons`: the note of every run that read something;
- `ingest-warnings`: only the notes of runs with warnings (quarantine, drift, old backlog, error).

A bare run (no Prefect server, `flows.bare`) logs the table, and the note when it warns.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import Any

from schemas.loads import LoadCounts, LoadRecord
from tasks.run_context import is_bare, run_logger
from warehouse.quarantine import QuarantinedFile

WARNING_STATE_NAME = "Completed with warnings"


def md_escape(text: object) -> str:
    """`text` safe inside the UI's markdown (also inside a table cell): no HTML tag vanishes,
    no pipe splits a cell, no emphasis or link starts by accident, no line break."""
    escaped = html.escape(str(text), quote=False)
    for char in "\\`*[]|":
        escaped = escaped.replace(char, f"\\{char}")
    return " ".join(escaped.split())


def code(text: str) -> str:
    """`text` as an inline code span (rendered verbatim; backticks in it are dropped)."""
    return f"`{text.replace('`', '')}`"


@dataclass
class RunFindings:
    """What made a run worth a second look; empty when there is nothing to say."""

    warnings: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)

    def message(self) -> str:
        """One line for the state message (the UI shows it next to the state)."""
        return "; ".join(self.warnings)


def findings(
    load: LoadRecord, counts: LoadCounts, *, backlog_age_s: float | None, max_age_s: float
) -> RunFindings:
    """Warnings of a completed run: quarantined records or files, drift, a backlog too old."""
    out = RunFindings()
    files_q, records_q = load["files_quarantined"], load["records_quarantined"]
    if files_q or records_q:
        out.warnings.append(
            f"{records_q} records quarantined ({files_q} of {load['files_read']} files "
            "wholly rejected)"
        )
        out.tags.append("quarantine")
    if drift := sum(counts.drift.values()):
        out.warnings.append(f"{drift} schema drift keys not loaded ({len(counts.drift)} distinct)")
        out.tags.append("schema-drift")
    if backlog_age_s is not None and backlog_age_s > max_age_s:
        out.warnings.append(
            f"backlog: the oldest unloaded file waited {backlog_age_s / 60:.0f} min "
            f"(> {max_age_s / 60:.0f} min)"
        )
        out.tags.append("old-backlog")
    if out.warnings:
        out.tags.append("warnings")
    return out


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
        {"measure": "rows updated (value or unit changed)", "value": load["rows_updated"]},
        {"measure": "rows unchanged (already loaded)", "value": load["rows_unchanged"]},
        {"measure": "rows removed (no longer derived)", "value": load["rows_removed"]},
        {"measure": "records quarantined", "value": load["records_quarantined"]},
        {"measure": "schema drift keys (not loaded)", "value": sum(counts.drift.values())},
        {"measure": "max lag receipt to load (s)", "value": round(counts.lag_seconds_max, 1)},
        *(
            {"measure": f"fetch: {name.replace('_', ' ')}", "value": value}
            for name, value in counts.fetch.as_dict().items()
        ),
    ]


def markdown_report(
    load: LoadRecord,
    counts: LoadCounts,
    *,
    files: list[QuarantinedFile] | None = None,
    found: RunFindings | None = None,
    top: int = 10,
) -> str:
    """Warnings, then quarantined files by vendor (with a command to see each), the top reasons
    and the drift keys: the UI says what, where and why, not only how many."""
    title = load["status"] if not (found and found.warnings) else WARNING_STATE_NAME.lower()
    lines = [f"# Load {load['load_id']}: {title}", ""]
    if load.get("error"):
        lines += [f"**Error:** {md_escape(load['error'])}", ""]
    if found and found.warnings:
        lines += ["## Warnings", ""] + [f"- {md_escape(w)}" for w in found.warnings] + [""]
    lines += ["## Quarantined files", ""]
    if files:
        # A list, not a table: keys and commands are long, and a table cuts them off in the UI.
        for f in files[:top]:
            what = "whole file" if f.whole_file else f"{f.entries} records"
            lines += [
                f"- **{md_escape(f.vendor)}** {code(f.object_key)} ({what}): {md_escape(f.reason)}",
                f"  - see it: {code(f'biobridge quarantine show {f.object_key}')}",
            ]
        if len(files) > top:
            more = code(f"biobridge quarantine list --load {load['load_id']}")
            lines.append(f"\n... and {len(files) - top} more: {more}")
    else:
        lines.append("none")
    lines += ["", "## Top quarantine reasons", ""]
    if counts.reasons:
        lines += ["| reason | records |", "|---|---|"]
        lines += [f"| {md_escape(r)} | {n} |" for r, n in counts.reasons.most_common(top)]
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
        lines += [f"| {md_escape(k)} | {n} |" for k, n in counts.drift.most_common(top)]
    else:
        lines.append("none")
    return "\n".join(lines)


def is_empty_run(load: LoadRecord, discovered: int) -> bool:
    """Nothing discovered, nothing read, no error: not worth an artifact."""
    return not discovered and not load["files_read"] and not load.get("error")


def publish(
    load: LoadRecord,
    counts: LoadCounts,
    discovered: int,
    *,
    files: list[QuarantinedFile] | None = None,
    found: RunFindings | None = None,
) -> bool:
    """Create the run's artifacts in Prefect (shown on the flow run page and the Artifacts page);
    a bare run logs them.

    Returns False (and publishes nothing) for an empty run.
    """
    if is_empty_run(load, discovered):
        return False
    note = markdown_report(load, counts, files=files, found=found)
    worth_a_look = bool((found and found.warnings) or load.get("error"))
    if is_bare():
        rows = summary_rows(load, counts, discovered)
        table = "\n".join(f"  {row['measure']:<48} {row['value']}" for row in rows)
        run_logger().info(
            "load %d, what this run read, loaded and rejected:\n%s", load["load_id"], table
        )
        if worth_a_look:
            run_logger().warning("%s", note)
        return True
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    create_table_artifact(
        key="ingest-summary",
        table=summary_rows(load, counts, discovered),
        description=f"Load {load['load_id']}: what this run read, loaded and rejected",
    )
    create_markdown_artifact(
        key="ingest-reasons",
        markdown=note,
        description=f"Load {load['load_id']}: which files were quarantined and why, drift keys",
    )
    if worth_a_look:
        create_markdown_artifact(
            key="ingest-warnings",
            markdown=note,
            description=f"Load {load['load_id']}: {found.message() if found else load['error']}",
        )
    return True
