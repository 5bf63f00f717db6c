"""The `ingest-trends` artifact: the last 24 h as pictures in the Prefect UI, refreshed each run.

Pictures are unicode sparklines (one character per hour, ▁ lowest to █ highest) inside a
markdown table. Prefect's image artifact and markdown take image *URLs*; whether the UI renders
a `data:` URI (an inline SVG or PNG) is not documented, and a picture that silently does not show
is worse than a plain one, so the sparklines are text: they render wherever markdown does.
"""

from __future__ import annotations

from collections.abc import Sequence

from prefect import get_run_logger
from prefect.artifacts import create_markdown_artifact

from tasks.runtime import database_url
from warehouse.postgres import connect
from warehouse.trends import Trends, pipeline_trends

TRENDS_KEY = "ingest-trends"
BARS = "▁▂▃▄▅▆▇█"
GAP = "·"  # an hour with nothing to measure (no file settled)


def sparkline(values: Sequence[float | None]) -> str:
    """One bar per value, scaled from 0 to the largest value; None is a gap."""
    top = max((v for v in values if v is not None), default=0.0)
    out = []
    for value in values:
        if value is None:
            out.append(GAP)
        elif top <= 0:
            out.append(BARS[0])
        else:
            out.append(BARS[min(len(BARS) - 1, int(value / top * (len(BARS) - 1) + 0.5))])
    return "".join(out)


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 120:
        return f"{value:.0f} s"
    if value < 7200:
        return f"{value / 60:.0f} min"
    return f"{value / 3600:.1f} h"


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def render_trends(trends: Trends) -> str:
    """Markdown: one row per series, its sparkline over the window, and a number to read."""
    hours = trends.hours
    first = hours[0].hour.strftime("%Y-%m-%d %H:00") if hours else "-"
    lines = [
        f"# Pipeline trends, last {len(hours)} h (UTC, hourly, oldest left)",
        "",
        f"From {first} to {trends.until.strftime('%Y-%m-%d %H:%M')} UTC. "
        f"`{GAP}`: no file settled that hour.",
        "",
        "| series | last 24 h | now | peak / overall |",
        "|---|---|---|---|",
    ]
    for vendor in trends.vendors:
        series = [float(h.rows_by_vendor.get(vendor, 0)) for h in hours]
        lines.append(
            f"| rows/h {vendor} | `{sparkline(series)}` | {int(series[-1])} "
            f"| peak {int(max(series))}, total {trends.rows_total(vendor)} |"
        )
    if not trends.vendors:
        lines.append("| rows/h | (no rows loaded in the window) | 0 | - |")
    p50 = [h.lag_p50_s for h in hours]
    p95 = [h.lag_p95_s for h in hours]
    rates = [h.quarantine_rate for h in hours]
    peak95 = max((v for v in p95 if v is not None), default=None)
    lines += [
        f"| lag p50 | `{sparkline(p50)}` | {_seconds(p50[-1] if p50 else None)} "
        f"| peak {_seconds(max((v for v in p50 if v is not None), default=None))} |",
        f"| lag p95 | `{sparkline(p95)}` | {_seconds(p95[-1] if p95 else None)} "
        f"| peak {_seconds(peak95)} |",
        f"| quarantine rate | `{sparkline(rates)}` | {_percent(rates[-1] if rates else None)} "
        f"| overall {_percent(trends.quarantine_rate)} |",
        "",
        "Lag: from the receiver landing a file to the pipeline settling it (loaded or "
        "quarantined). Quarantine rate: share of settled files that quarantined the whole file "
        "or some of its records.",
    ]
    return "\n".join(lines) + "\n"


def publish_trends(hours: int = 24) -> bool:
    """Compute and publish the trends artifact; a failure logs a warning and returns False.

    Never raises: trends are a view, and must not fail a run that loaded.
    """
    logger = get_run_logger()
    try:
        with connect(database_url()) as conn:
            trends = pipeline_trends(conn, hours=hours)
        create_markdown_artifact(
            key=TRENDS_KEY,
            markdown=render_trends(trends),
            description="Rows per vendor per hour, lag p50/p95, quarantine rate: last 24 h",
        )
    except Exception as exc:  # noqa: BLE001 - a trends error must not fail the load
        logger.warning("could not publish the %s artifact: %s", TRENDS_KEY, exc)
        return False
    return True
