"""`biobridge`: the command line. Heavy imports happen inside each command, so `biobridge
receiver` starts without loading Prefect, Polars or Pandera."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from landing.keys import VENDORS
from landing.settings import get_settings

if TYPE_CHECKING:
    from tasks.verify import VerifyReport


def _instant(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} has no time zone: add Z or +00:00")
    return value


def cmd_receiver(args: argparse.Namespace) -> int:
    """Run the webhook receiver (no Postgres or Prefect needed)."""
    from landing.server import serve

    settings = get_settings()
    given = (("host", args.host), ("port", args.port), ("workers", args.workers))
    overrides = {k: v for k, v in given if v is not None}
    serve(settings.model_copy(update=overrides))
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    """Apply the SQL migrations to the configured (or embedded) Postgres."""
    from tasks.migrate import apply_migrations
    from tasks.runtime import database_url

    applied = apply_migrations(database_url())
    print(f"applied: {', '.join(applied)}" if applied else "database is up to date")
    return 0


def cmd_ingest(args: argparse.Namespace) -> int:
    """Run one ingest flow run now; exit non-zero if it failed."""
    from deployments.run import run_ingest

    return run_ingest(
        mode=args.mode,
        vendors=args.vendor or list(VENDORS),
        received_from=args.received_from,
        received_until=args.received_until,
        replay_states=args.state or ["quarantined"],
        batch_files=args.batch_files,
        workers=args.workers,
    )


def cmd_verify(args: argparse.Namespace) -> int:
    """Check that landed objects, the ledger and the loaded rows account for each other."""
    from datetime import timedelta

    from landing.store import StoreError
    from tasks.errors import DatabaseError
    from tasks.postgres import connect
    from tasks.runtime import database_url, landing_store
    from tasks.verify import verify

    settings = get_settings()
    try:
        with connect(database_url()) as conn:
            report = verify(
                conn,
                landing_store(),
                received_from=args.received_from,
                received_until=args.received_until,
                vendors=args.vendor or list(VENDORS),
                grace=timedelta(seconds=2 * settings.ingest_interval_s),
            )
    except (DatabaseError, StoreError) as exc:
        print(f"verify could not run: {exc}", file=sys.stderr)
        return 2
    if args.json:
        out = report.counts()
        out["discrepancies"] = [vars(d) for d in report.discrepancies[: args.limit]]
        print(json.dumps(out, indent=2))
    else:
        print(format_verify(report, limit=args.limit))
    return 0 if report.ok else 1


def format_verify(report: VerifyReport, *, limit: int) -> str:
    """The verify report as a few lines of text, then every discrepancy up to `limit`."""
    window = (
        f"[{report.received_from.isoformat() if report.received_from else '-inf'}, "
        f"{report.received_until.isoformat()})"
    )
    states = ", ".join(f"{n} {s}" for s, n in sorted(report.ledger_states.items())) or "none"
    vendors = "all" if set(report.vendors) >= set(VENDORS) else ",".join(report.vendors)
    lines = [
        f"window {window}, vendors {vendors}",
        f"store objects: {report.objects_listed}; ledger: {states}; not yet discovered "
        f"(within the settle window): {report.undiscovered_recent}",
        f"loaded files checked: {report.files_checked} (rows_loaded {report.rows_loaded_ledger}, "
        f"re-flattened {report.rows_reflattened}): "
        f"{report.keys_present} present, {report.keys_superseded} superseded by later "
        f"deliveries, {report.keys_lost} lost",
        f"rows without lineage: {report.rows_without_lineage}; rows without a load record: "
        f"{report.rows_without_load}; duplicated keys: {report.duplicate_keys}; legacy rows "
        f"(no source_key): {'-' if report.legacy_rows is None else report.legacy_rows}",
    ]
    if report.ok:
        lines.append("OK: no discrepancies")
        return "\n".join(lines)
    kinds = ", ".join(f"{n} {k}" for k, n in sorted(report.by_kind().items()))
    lines.append(f"FAILED: {len(report.discrepancies)} discrepancies ({kinds})")
    lines += [f"  {d}" for d in report.discrepancies[:limit]]
    if len(report.discrepancies) > limit:
        lines.append(f"  ... and {len(report.discrepancies) - limit} more (--limit to see them)")
    return "\n".join(lines)


def cmd_health(args: argparse.Namespace) -> int:
    """Report database, store, backlog and last loads; exit 1 when something is wrong."""
    from datetime import timedelta

    from tasks.errors import DatabaseError
    from tasks.pipeline_health import pipeline_health
    from tasks.runtime import database_url, landing_store

    max_age = args.max_pending_age or get_settings().health_max_pending_age_s
    try:
        url = database_url()
    except DatabaseError as exc:  # the embedded server would not start; the message is redacted
        report: dict[str, Any] = {"ok": False, "problems": [f"database: {exc}"]}
    else:
        report = pipeline_health(url, landing_store, max_pending_age=timedelta(seconds=max_age))
    print(json.dumps(report, indent=2, default=str) if args.json else format_health(report))
    return 0 if report["ok"] else 1


def format_health(report: dict[str, Any]) -> str:
    """The health report as text: one line per component, then the problems."""
    lines = [f"biobridge health: {'OK' if report['ok'] else 'UNHEALTHY'}"]
    if db := report.get("database"):
        state = "ok" if db["ok"] else "FAIL"
        detail = (
            f"PostgreSQL {db['server_version']}, migrations up to date" if db["ok"] else db["error"]
        )
        lines.append(f"database  {state:4}  {db['database']}: {detail}")
    if store := report.get("store"):
        state = "ok" if store["ok"] else "FAIL"
        detail = "probe written, read back and deleted" if store["ok"] else store["error"]
        lines.append(f"store     {state:4}  {store['url'] or '?'}: {detail}")
    if backlog := report.get("backlog"):
        undiscovered = backlog["undiscovered"]
        text = (
            f"{backlog['pending']} pending, {backlog['deferred']} deferred, "
            f"{'?' if undiscovered is None else undiscovered} landed but not yet discovered"
        )
        if backlog["oldest_key"]:
            text += (
                f"; oldest: {backlog['oldest_key']}, received "
                f"{backlog['oldest_age_s'] / 60:.1f} min ago"
            )
        lines.append(f"backlog         {text}")
    if loads := report.get("loads"):
        done, failed = loads["last_completed"], loads["last_failed"]
        text = f"last completed: {done['load_id']} at {done['finished_at']}" if done else "none yet"
        if failed:
            text += f"; last failed: {failed['load_id']} at {failed['finished_at']}: "
            text += str(failed["error"])
        text += f"; {loads['running']} running"
        lines.append(f"loads           {text}")
    if report["problems"]:
        lines.append("problems:")
        lines += [f"  - {p}" for p in report["problems"]]
    return "\n".join(lines)


def cmd_up(args: argparse.Namespace) -> int:
    """Run the whole stack: Postgres, Prefect server + UI, the receiver, the scheduled ingest."""
    from deployments.stack import run_stack

    return run_stack(interval_s=args.interval, prefect_port=args.prefect_port)


def cmd_demo(args: argparse.Namespace) -> int:
    """Post the example payloads, run one ingest and print what landed per vendor and metric."""
    from deployments.demo import run_demo

    return run_demo(receiver_url=args.receiver_url)


def build_parser() -> argparse.ArgumentParser:
    """The `biobridge` argument parser."""
    p = argparse.ArgumentParser(prog="biobridge", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("receiver", help=cmd_receiver.__doc__)
    r.add_argument("--host", help="bind address (default BIOBRIDGE_HOST or 127.0.0.1)")
    r.add_argument("--port", type=int, help="port (default BIOBRIDGE_PORT or 8000)")
    r.add_argument("--workers", type=int, help="processes (default BIOBRIDGE_WORKERS or 1)")
    r.set_defaults(func=cmd_receiver)

    m = sub.add_parser("migrate", help=cmd_migrate.__doc__)
    m.set_defaults(func=cmd_migrate)

    i = sub.add_parser("ingest", help=cmd_ingest.__doc__)
    i.add_argument("--mode", choices=["scheduled", "backfill", "replay"], default="scheduled")
    i.add_argument("--vendor", action="append", choices=VENDORS, help="repeatable; default all")
    i.add_argument("--from", dest="received_from", type=_instant, help="ISO instant, inclusive")
    i.add_argument("--until", dest="received_until", type=_instant, help="ISO instant, exclusive")
    i.add_argument(
        "--state",
        action="append",
        choices=["loaded", "quarantined", "deferred"],
        help="replay: ledger states to load again (default quarantined)",
    )
    i.add_argument("--batch-files", type=int, default=2000)
    i.add_argument("--workers", type=int, default=2)
    i.set_defaults(func=cmd_ingest)

    u = sub.add_parser("up", help=cmd_up.__doc__)
    u.add_argument(
        "--interval",
        type=int,
        default=None,
        help="seconds between scheduled ingest runs (default BIOBRIDGE_INGEST_INTERVAL_S)",
    )
    u.add_argument("--prefect-port", type=int, default=4200)
    u.set_defaults(func=cmd_up)

    d = sub.add_parser("demo", help=cmd_demo.__doc__)
    d.add_argument(
        "--receiver-url", default=None, help="a running receiver (default: start a temporary one)"
    )
    d.set_defaults(func=cmd_demo)

    v = sub.add_parser("verify", help=cmd_verify.__doc__)
    v.add_argument("--from", dest="received_from", type=_instant, help="ISO instant, inclusive")
    v.add_argument("--until", dest="received_until", type=_instant, help="ISO instant, exclusive")
    v.add_argument("--vendor", action="append", choices=VENDORS, help="repeatable; default all")
    v.add_argument("--limit", type=int, default=50, help="discrepancies printed (default 50)")
    v.add_argument("--json", action="store_true", help="print the report as JSON")
    v.set_defaults(func=cmd_verify)

    h = sub.add_parser("health", help=cmd_health.__doc__)
    h.add_argument(
        "--max-pending-age",
        type=int,
        default=None,
        help="seconds a landed file may wait (default BIOBRIDGE_HEALTH_MAX_PENDING_AGE_S or 900)",
    )
    h.add_argument("--json", action="store_true", help="print the report as JSON")
    h.set_defaults(func=cmd_health)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `biobridge` console script."""
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
