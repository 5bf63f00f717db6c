"""Run one ingest: on the running stack's Prefect server when there is one, else bare, in this
process without Prefect.

With `biobridge up` running on the same data dir (found through `<data_dir>/stack.json`), the CLI
hands the run to `up`'s standby process (`deployments.runhost`), which calls `run_here` here with
the flow already imported. Where no standby takes it (`up` still starting), or with
`PREFECT_API_URL` naming another server, this process runs it: `run_here` creates the run from
that server's deployment (it shows in its UI as a run of the deployment) in a Pending state,
which the stack's runner leaves alone (it starts only Scheduled runs), and executes it at once:
no runner poll, no flow-run process to start, no temporary Prefect server. A Ctrl-C stops it as
Ctrl-C stops `up`'s runs: the load record says why and the run ends Crashed with a message. A
server that does not serve the deployment (a plain `prefect server start`) gets a run of the flow
without deployment.
Otherwise (no stack, no PREFECT_API_URL) the run is bare (`flows.bare`): the flow's body with
plain steps, no Prefect import, no API server, so it pays ~2 s beyond its work instead of the
~10-30 s a temporary Prefect API cost. Same load record, report (logged), exit codes and Ctrl-C.
"""

from __future__ import annotations

import atexit
import functools
import gc
import logging
import os
import socket
import sys
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, cast

from deployments.prefect_env import configure_prefect_env
from deployments.stack import DEPLOYMENT, http_ok, read_stack_file
from landing.settings import get_settings
from schemas.loads import LOAD_TOTALS

if TYPE_CHECKING:
    from prefect import State
    from prefect.client.schemas.objects import FlowRun

    from flows.params import IngestParams

SUMMARY_FIELDS = tuple((name.replace("_", " "), name) for name in LOAD_TOTALS)


class RunError(RuntimeError):
    """The run could not be submitted or started; the message says what to do."""


def format_load(load: Mapping[str, Any]) -> str:
    """The load record as the lines `biobridge ingest` prints."""
    lines = [f"load {load['load_id']}: {load['status']}"]
    lines += [f"  {label:<20} {load[key]}" for label, key in SUMMARY_FIELDS]
    if load.get("error"):
        lines.append(f"  error: {load['error']}")
    return "\n".join(lines)


def stack_api_url() -> str | None:
    """The Prefect API of the running stack: `PREFECT_API_URL`, else `<data_dir>/stack.json`."""
    if url := os.environ.get("PREFECT_API_URL"):
        if not http_ok(f"{url.rstrip('/')}/health", timeout_s=5):
            raise RunError(
                f"PREFECT_API_URL={url} does not answer: start `biobridge up` (or that server), "
                "or unset PREFECT_API_URL to run here without a server"
            )
        return url
    info = read_stack_file(get_settings().data_dir)
    return None if info is None else str(info["api_url"])


def api_configured_in_process() -> str | None:
    """The API URL this process's Prefect settings name, only when Prefect is loaded already:
    the CLI never imports it just to look (a bare run must not pay for the import)."""
    if "prefect.settings" not in sys.modules:
        return None
    from prefect.settings import get_current_settings

    url = get_current_settings().api.url
    return str(url) if url else None


def ingest_params(**options: Any) -> IngestParams:
    """`biobridge ingest`'s options as the flow's parameters; a RunError naming the options when
    they are invalid. Light (pydantic only): the CLI checks its options before anything starts."""
    from pydantic import ValidationError

    from flows.params import IngestParams

    try:
        return IngestParams(**options)
    except ValidationError as exc:
        reasons = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'options'}: {e['msg']}".removeprefix("options: ")
            .replace("Value error, ", "")
            .replace("received_from", "--from")
            .replace("received_until", "--until")
            .replace("chunk_hours", "--chunk-hours")
            .replace("chunk_parallel", "--chunk-parallel")
            for e in exc.errors(include_input=False, include_url=False)
        )
        raise RunError(f"invalid ingest options: {reasons}") from None


def run_ingest(params: IngestParams, *, here: bool = False) -> int:
    """Run the flow once; 0 when it completed, 1 when it failed (the reason is printed).
    `here` runs it in this process even when `biobridge up` serves the deployment (the demo's
    settings point at its fake vendor API, which the served process does not know)."""
    configure_prefect_env(get_settings().data_dir)
    # Under Prefect when a server is running, or when this process's Prefect settings name one
    # already (a test harness, a program embedding the CLI); bare otherwise.
    in_process = api_configured_in_process()
    api = stack_api_url() or in_process
    if api and api != in_process:
        os.environ["PREFECT_API_URL"] = api
    from deployments.progress import chunk_progress

    with chunk_progress(params):
        if api is None:
            return run_bare_here(params)
        return run_here(params, api=api, of_deployment=not here)


BARE_LOG_FORMAT = "%(asctime)s.%(msecs)03d | %(levelname)-7s | %(name)s - %(message)s"


def run_bare_here(params: IngestParams) -> int:
    """Run the flow's body bare, in this process without Prefect (no server is reachable); the
    same output and exit codes as `run_here`: 0 completed, 1 failed, Ctrl-C raises."""
    from ops.api import check_database

    check_database()  # fail in seconds with the reason, not after the steps' retries
    # The run's lines (INFO) and every library's warnings on stderr, as Prefect's console shows.
    logging.basicConfig(level=logging.WARNING, format=BARE_LOG_FORMAT, datefmt="%H:%M:%S")
    from flows.bare import run_bare
    from flows.report import WARNING_STATE_NAME
    from tasks.run_context import BARE_LOGGER

    logging.getLogger(BARE_LOGGER).setLevel(logging.INFO)
    # At exit, the interpreter's last collection need not walk every module's objects (~0.25 s
    # of the command's exit, measured); atexit runs before it.
    atexit.register(gc.freeze)
    try:
        load, found = run_bare(params)
    except KeyboardInterrupt:
        print(
            "interrupted: the run stopped; its committed batches stand and the other files load "
            "on the next run (its load record says how far it got)",
            file=sys.stderr,
        )
        raise
    except Exception as exc:  # noqa: BLE001 - printed for the operator, exit code says it failed
        print(f"ingest failed: {type(exc).__name__}: {exc}")
        return 1
    print(format_load(load))
    if found.warnings:
        print(f"{WARNING_STATE_NAME}: {found.message()}")
    return 0


def deployment_run(params: IngestParams, *, api: str) -> FlowRun | None:
    """A Pending run of the served deployment for this process to execute, or None when the
    server at `api` does not serve it. Pending, not Scheduled: the stack's runner starts only
    Scheduled runs, so it leaves this one to us."""
    from prefect import get_client
    from prefect.exceptions import ObjectNotFound
    from prefect.states import Pending

    with get_client(sync_client=True) as client:
        try:
            deployment = client.read_deployment_by_name(DEPLOYMENT)
        except ObjectNotFound:
            return None
        run = client.create_flow_run_from_deployment(
            deployment.id,
            parameters={"params": params.model_dump(mode="json")},
            state=Pending(message="started by the biobridge CLI, which runs it"),
            tags=["cli"],
        )
        # `up` interrupts the CLI runs in flight when it stops, as it cancels its own.
        client.update_flow_run(run.id, infrastructure_pid=f"{socket.gethostname()}:{os.getpid()}")
    print(f"run {run.name} on the running stack: {api.removesuffix('/api')}/runs/flow-run/{run.id}")
    return run


@contextmanager
def honour_cancel(run: FlowRun | None, *, poll_s: float = 1.0) -> Iterator[threading.Event]:
    """Stop this process's run when someone cancels it in the UI. The stack's runner enforces
    cancels only for runs it started; a run the CLI executes itself is watched here, and a cancel
    becomes the SIGINT the flow already handles (it stops between batches and says so)."""
    from flows.in_flight import STOP_REQUESTED, request_stop

    cancelled = threading.Event()
    done = threading.Event()

    def watch() -> None:
        from prefect import get_client

        assert run is not None
        with get_client(sync_client=True) as client:
            while not done.wait(poll_s):
                try:
                    state = client.read_flow_run(run.id).state
                except Exception:  # noqa: BLE001, S112 - a busy server: ask again next second
                    continue
                if state is not None and state.type.value == "CANCELLING":
                    cancelled.set()
                    if not done.is_set():  # the run is still executing: stop it
                        request_stop()
                    return

    watcher = threading.Thread(target=watch, name="cancel-watch", daemon=True)
    if run is not None:
        watcher.start()
    try:
        yield cancelled
    finally:
        done.set()
        STOP_REQUESTED.clear()  # a stop asked of this run is not for a later one in this process


CANCEL_STATES = ("CANCELLING", "CANCELLED")


def ended_cancelled(run: FlowRun) -> int:
    """Mark the run Cancelled, say so, and return the command's exit code."""
    mark_cancelled(run)
    print(
        "cancelled from the Prefect UI: its committed batches stand and the other "
        "files load on the next run (its load record says how far it got)",
        file=sys.stderr,
    )
    return 1


def mark_cancelled(run: FlowRun) -> None:
    """End a run cancelled from the UI as Cancelled (the engine saw only an interrupt)."""
    from prefect import get_client
    from prefect.states import Cancelled

    with get_client(sync_client=True) as client:
        client.set_flow_run_state(
            run.id,
            Cancelled(message="cancelled from the Prefect UI; stopped between batches"),
            force=True,
        )


def unjoined_heartbeats() -> bool:
    """Let a sync flow run end without joining Prefect's heartbeat thread; whether it is so.

    The thread sleeps in 1 s steps and a sync run joins it at its end: 0.5-1 s added to every
    run (py-spy of `up`'s standby: 0.75 s of a 1.2 s run in `Thread.join`). Prefect's async
    engine does not join (`join_on_exit=False`); the thread is a daemon that sees its stop flag
    within a second and sends nothing more. Our in-process runs take that path too. A Prefect
    without the parameter is left as it is (a test in tests/test_ingest.py fails on it).
    """
    import inspect

    import prefect.flow_engine as engine

    heartbeats = engine._send_heartbeats
    if isinstance(heartbeats, functools.partial):
        return True
    if "join_on_exit" not in inspect.signature(heartbeats).parameters:
        return False
    engine._send_heartbeats = functools.partial(heartbeats, join_on_exit=False)
    return True


def run_here(params: IngestParams, *, api: str, of_deployment: bool = False) -> int:
    """Run the flow in this process on the server at `api` (it shows in that server's UI; as a
    run of the served deployment when `of_deployment` and the server has it)."""
    from ops.api import check_database

    check_database()  # fail in seconds with the reason, not after the flow's retries
    from prefect.flow_engine import run_flow

    unjoined_heartbeats()
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.ingest import ingest

    with temporary_settings({PREFECT_API_URL: api}):
        run = deployment_run(params, api=api) if of_deployment else None
        try:
            with honour_cancel(run) as cancelled:
                state = cast(
                    "State[Any]",
                    run_flow(
                        ingest, flow_run=run, parameters={"params": params}, return_type="state"
                    ),
                )
        except KeyboardInterrupt:
            if run is not None and cancelled.is_set():
                return ended_cancelled(run)
            print(
                "interrupted: the run ended Crashed; its committed batches stand and the other "
                "files load on the next run (its load record says how far it got)",
                file=sys.stderr,
            )
            raise
        from prefect.logging.handlers import APILogWorker

        APILogWorker.drain_all(timeout=5)  # the run's last log lines, while the API is there
        # A cancel can also end the run without an interrupt: the stop cancelled a query and the
        # flow returned, or the server refused its final state because it was Cancelling.
        if run is not None and (cancelled.is_set() or state.type.value in CANCEL_STATES):
            return ended_cancelled(run)
    if state.is_completed():
        print(format_load(state.result()))
        if state.name != "Completed":
            print(f"{state.name}: {state.message}")
        return 0
    try:
        state.result()
    except Exception as exc:  # noqa: BLE001 - printed for the operator, exit code says it failed
        print(f"ingest failed: {type(exc).__name__}: {exc}")
    return 1
