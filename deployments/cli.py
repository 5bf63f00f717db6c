"""`biobridge`: the command line. Heavy imports happen inside each command, so `biobridge
receiver` starts without loading Prefect, Polars or Pandera."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import datetime

from landing.keys import VENDORS
from landing.settings import get_settings


def _instant(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} has no time zone: add Z or +00:00")
    return value


def cmd_receiver(args: argparse.Namespace) -> int:
    """Run the webhook receiver (no Postgres or Prefect needed)."""
    from landing.server import serve

    settings = get_settings()
    overrides = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
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
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `biobridge` console script."""
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
