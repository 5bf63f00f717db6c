"""`biobridge up`: the whole pipeline on one machine, with embedded defaults.

Postgres (the configured one, or an embedded server under BIOBRIDGE_DATA_DIR), a Prefect server
with its UI, the receiver in its own process (it keeps accepting webhooks whatever happens to
Prefect or Postgres), and the ingest deployment served on a schedule in this process.

Stopping: the receiver and the server run in their own sessions, so a Ctrl-C in the terminal
reaches this process and the flow runs in flight (they finish or abandon their batch and close
their load record with the reason); runs that `biobridge ingest` executes in its own process on
this stack get a SIGINT from here and stop the same way. This process stops in order: the runner
first (it cancels the runs in flight while the Prefect server can still record their state), then
the receiver and the server together, then Postgres. A second Ctrl-C, or STOP_DEADLINE_S after
the first, stops what is left at once: flow-run processes still alive are killed and their runs
set Crashed with a message, so no run stays Running. `up` also crashes runs a killed `up` left
Running.

One `up` per data dir: a lock file in the data dir says which process holds it, and
`<data_dir>/stack.json` tells the other commands where the running stack's Prefect API is.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import IO, Any

from deployments.prefect_env import configure_prefect_env

STACK_FILE = "stack.json"
LOCK_FILE = "up.lock"
FLOW_NAME = "ingest-landed-webhooks"
DEPLOYMENT_NAME = "landed-webhooks"
DEPLOYMENT = f"{FLOW_NAME}/{DEPLOYMENT_NAME}"
DEPLOYMENT_TAGS = ["biobridge", "ingest"]
# Seconds the runner waits between polls for runs to start (Prefect's default is 10): runs started
# from the UI or `prefect deployment run` wait for the next poll, then for their process to import
# the flow (~3 s). One cheap query a second on the local server; the CLI's runs skip both.
RUNNER_POLL_S = 1
# One Ctrl-C returns the shell within ~10 s: the runner gets STOP_DEADLINE_S, then leftover
# flow-run processes are killed, and the server and receiver get CHILD_STOP_S together.
STOP_DEADLINE_S = 5.0
CHILD_STOP_S = 2.5
UNFINISHED = ("PENDING", "RUNNING", "CANCELLING")


class StackError(RuntimeError):
    """`up` cannot start: the message says what is taken and how to fix it."""


def wait_http_ok(url: str, *, timeout_s: float, what: str, proc: subprocess.Popen[bytes]) -> None:
    """Poll `url` until it answers 200; fail with what went wrong if the process died first."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise StackError(f"{what} exited with code {proc.returncode} before it was ready")
        if http_ok(url):
            return
        time.sleep(0.5)
    raise StackError(f"{what} did not answer {url} within {timeout_s:.0f}s")


def http_ok(url: str, timeout_s: float = 2) -> bool:
    """True when `url` answers 200."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:  # noqa: S310 - our localhost URL
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False


@contextmanager
def data_dir_lock(data_dir: Path) -> Iterator[None]:
    """Hold `<data_dir>/up.lock` (flock) while the stack runs; refuse if another process has it."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / LOCK_FILE
    handle: IO[str] = path.open("a+")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "?"
            raise StackError(
                f"data dir {data_dir.resolve()} is taken by another `biobridge up` (pid {holder}): "
                "stop that one first, or run this one with another BIOBRIDGE_DATA_DIR"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        yield
    finally:
        handle.close()  # closing releases the lock


def check_port_free(host: str, port: int, *, what: str, fix: str) -> None:
    """Fail now, naming the port, when `host:port` cannot be bound (instead of a child dying)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise StackError(
                f"port {port} on {host} ({what}) is taken: {exc.strerror}. Stop what uses it, "
                f"or {fix}"
            ) from None


def read_stack_file(data_dir: Path) -> dict[str, Any] | None:
    """The running stack's `stack.json`, if its process is alive and its API answers."""
    try:
        info: dict[str, Any] = json.loads((data_dir / STACK_FILE).read_text())
    except (OSError, ValueError):
        return None
    try:
        os.kill(int(info["pid"]), 0)
    except (OSError, KeyError, ValueError, TypeError):
        return None
    return info if http_ok(f"{info.get('api_url')}/health") else None


def _spawn(args: list[str], *, env: dict[str, str]) -> subprocess.Popen[bytes]:
    # Own session: a Ctrl-C in the terminal reaches only `up`, which stops the children in order.
    # And asked to die with us: a SIGKILLed `up` leaves no server or receiver behind.
    return subprocess.Popen(  # noqa: S603 - fixed argv
        args, env=env, start_new_session=True, preexec_fn=die_with_parent
    )


def die_with_parent() -> None:
    """In the child before exec: the kernel sends it SIGTERM when its parent dies (Linux)."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _stop_children(procs: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM every child's process group, wait CHILD_STOP_S in total, then SIGKILL the rest."""
    live = [p for p in procs if p.poll() is None]
    for proc in live:
        _signal_group(proc, signal.SIGTERM)
    deadline = time.monotonic() + CHILD_STOP_S
    for proc in live:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            _signal_group(proc, signal.SIGKILL)
            proc.wait(timeout=5)


def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass


def kill_flow_processes() -> list[str]:
    """SIGKILL the runner's flow-run processes (`python -m prefect.engine`, children of this
    process) that outlived the deadline, with their descendants; what was killed. Their
    uncommitted batch rolls back; the next run closes their load record as abandoned."""
    import psutil  # type: ignore[import-untyped]

    killed: list[psutil.Process] = []
    for child in psutil.Process().children():
        try:
            if "prefect.engine" not in child.cmdline():
                continue
            for proc in [*child.children(recursive=True), child]:
                proc.kill()
                killed.append(proc)
        except psutil.Error:  # it ended meanwhile
            continue
    psutil.wait_procs(killed, timeout=3)
    return [f"pid {p.pid}" for p in killed]


def interrupt_cli_runs() -> list[str]:
    """SIGINT the processes on this host that execute CLI runs of the served deployment on this
    stack (`up`'s standbys, or a `biobridge` command running one itself; each recorded
    `host:pid` as its run's infrastructure_pid): they stop as the runner's runs do, closing their
    load record with the reason. What was signalled."""
    import psutil
    from prefect import get_client
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterName,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
        FlowRunFilterTags,
    )
    from prefect.client.schemas.objects import StateType

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(
                    type=FlowRunFilterStateType(any_=[StateType(t) for t in UNFINISHED])
                ),
                tags=FlowRunFilterTags(all_=["cli"]),
            ),
            deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=[DEPLOYMENT_NAME])),
        )
    signalled = []
    for run in runs:
        host, _, pid = (run.infrastructure_pid or "").rpartition(":")
        if host != socket.gethostname() or not pid.isdigit():
            continue
        try:
            proc = psutil.Process(int(pid))
            if not any(
                "biobridge" in arg or "deployments.cli" in arg or "deployments.runhost" in arg
                for arg in proc.cmdline()
            ):
                continue  # not ours (the pid was reused)
            proc.send_signal(signal.SIGINT)
            signalled.append(f"{run.name} (pid {pid})")
        except psutil.Error:  # it ended meanwhile
            continue
    return signalled


def crash_unfinished_runs(message: str) -> list[str]:
    """Set every run of the served deployment still Pending/Running/Cancelling to Crashed with
    `message`: only this `up` (one per data dir) and the CLI runs it serves run them, and with
    this stack's server gone (or not yet there) none of them can report its end."""
    from prefect import get_client
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterName,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.states import Crashed

    crashed = []
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(
                    type=FlowRunFilterStateType(any_=[StateType(t) for t in UNFINISHED])
                )
            ),
            deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=[DEPLOYMENT_NAME])),
        )
        for run in runs:
            client.set_flow_run_state(run.id, Crashed(message=message), force=True)
            crashed.append(run.name)
    return crashed


def _pending_files() -> str:
    """What will load on the next start, for the goodbye line."""
    try:
        from ops.api import backlog_summary

        pending, oldest = backlog_summary()
    except Exception as exc:  # noqa: BLE001 - only informational, and we are stopping
        return f"(could not count pending files: {exc})"
    if not pending:
        return "nothing pending; files landed since the last run load on the next start"
    return f"{pending} files will load on next start (oldest received {oldest:%Y-%m-%d %H:%M}Z)"


def run_stack(*, interval_s: int | None, prefect_port: int) -> int:
    """Start everything and serve the scheduled ingest until interrupted."""
    from deployments.runhost import run_host
    from tasks.settings import get_pipeline_settings

    settings = get_pipeline_settings()
    data_dir = settings.data_dir
    configure_prefect_env(data_dir)
    os.environ.setdefault("PREFECT_RUNNER_POLL_FREQUENCY", str(RUNNER_POLL_S))
    # Until the runner takes over, SIGTERM stops us like Ctrl-C: the children are stopped too.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    with data_dir_lock(data_dir), ExitStack() as stack:
        check_port_free(settings.host, settings.port, what="the receiver", fix="set BIOBRIDGE_PORT")
        check_port_free("127.0.0.1", prefect_port, what="the Prefect server", fix="--prefect-port")
        from ops.api import database_display_url, database_url, migrate
        from tasks.settings import PIPELINE_ONLY_ENV

        migrate()
        # Flow runs run in child processes of the runner: hand them the resolved database. The
        # receiver gets none of the pipeline's variables (it needs neither Postgres nor Prefect).
        os.environ.setdefault("BIOBRIDGE_DATABASE_URL", database_url().get_secret_value())
        receiver_env = {k: v for k, v in os.environ.items() if k not in PIPELINE_ONLY_ENV}
        api = f"http://127.0.0.1:{prefect_port}/api"
        # The UI asks the server where its API is: without this it says port 4200 whatever
        # --prefect-port is, and the UI pages stay blank ("Oops. Something went wrong").
        server_env = os.environ | {
            "PREFECT_UI_API_URL": api,
            "PREFECT_SERVER_API_HOST": "127.0.0.1",
            "PREFECT_SERVER_API_PORT": str(prefect_port),
        }
        server = _spawn(
            [
                sys.executable,
                "-m",
                "prefect",
                "server",
                "start",
                "--host",
                "127.0.0.1",
                "--port",
                str(prefect_port),
            ],
            env=server_env,
        )
        receiver = _spawn([sys.executable, "-m", "deployments.cli", "receiver"], env=receiver_env)
        stack.callback(_stop_children, [receiver, server])  # together: within CHILD_STOP_S
        # `biobridge ingest` hands its runs to a process here that has done its imports; it
        # imports while the server starts, so it is ready when `up` is.
        host = stack.enter_context(run_host(data_dir, env=os.environ | {"PREFECT_API_URL": api}))
        wait_http_ok(f"{api}/health", timeout_s=120, what="the Prefect server", proc=server)
        wait_http_ok(
            f"http://{settings.host}:{settings.port}/healthz",
            timeout_s=30,
            what="the receiver",
            proc=receiver,
        )
        os.environ["PREFECT_API_URL"] = api
        every = interval_s or settings.ingest_interval_s
        info = {
            "pid": os.getpid(),
            "api_url": api,
            "ui_url": f"http://127.0.0.1:{prefect_port}",
            "receiver_url": f"http://{settings.host}:{settings.port}",
            "deployment": DEPLOYMENT,
            "run_socket": None if host.path is None else str(host.path),
            "database": database_display_url(),
            "data_dir": str(data_dir.resolve()),
        }
        stack_file = data_dir / STACK_FILE
        stack.callback(stack_file.unlink, missing_ok=True)
        if left := crash_unfinished_runs(
            "biobridge up stopped (killed) before this run finished; its load record says what "
            "it committed, the rest loads on the next run"
        ):
            print(f"runs a previous `up` left unfinished, now Crashed: {', '.join(left)}")
        print(banner(info, every=every, landing=settings.landing_location()), flush=True)
        # The other commands find the stack once its deployment exists (they create its runs).
        stopped_at = serve_until_stopped(
            every, ready=lambda: stack_file.write_text(json.dumps(info, indent=2))
        )
        # The CLI runs `up` interrupted end within the deadline too, while the server can still
        # record their end (their process retries a gone server for a minute).
        host.wait_runs(max(0.0, STOP_DEADLINE_S - (time.monotonic() - stopped_at)))
        if killed := kill_flow_processes():
            print(f"flow runs in flight after the deadline, killed: {', '.join(killed)}")
        try:
            crash_unfinished_runs(
                f"biobridge up stopped and the run did not end within {STOP_DEADLINE_S:.0f}s: "
                "its uncommitted batch was rolled back, its files load on the next run"
            )
        except Exception as exc:  # noqa: BLE001 - we are stopping; say so and go on
            print(f"could not mark unfinished runs Crashed: {exc}", file=sys.stderr)
        from prefect.events.worker import EventsWorker
        from prefect.logging.handlers import APILogWorker

        # Send the last log lines and events while the server is there: at exit, with the
        # server gone, their workers would retry for seconds.
        APILogWorker.drain_all(timeout=1)
        EventsWorker.drain_all(timeout=1)
        pending = _pending_files()
        took = time.monotonic() - stopped_at
        print(f"biobridge stopped in {took:.1f}s: {pending}", flush=True)
    return 0


def banner(info: dict[str, Any], *, every: int, landing: str) -> str:
    """What `up` prints once everything answers: where each part is, and how to reach it."""
    return (
        "biobridge is up\n"
        f"  receiver   {info['receiver_url']}/webhooks/<vendor>\n"
        f"  Prefect UI {info['ui_url']}\n"
        f"  landing    {landing}\n"
        f"  database   {info['database']}   (biobridge db --psql)\n"
        f"  ingest     every {every}s: deployment {info['deployment']}\n"
        "From another terminal, `biobridge ingest|demo|...` use this stack; for Prefect's CLI:\n"
        f"  export PREFECT_API_URL={info['api_url']}\n"
        f"  prefect deployment run '{info['deployment']}'\n"
        "Ctrl-C stops everything."
    )


def serve_until_stopped(every: int, *, ready: Callable[[], object] = lambda: None) -> float:
    """Serve the ingest deployment until SIGINT/SIGTERM; then cancel runs in flight and return
    the monotonic time of the first signal.

    The first signal asks the runner to stop (it cancels the runs in flight: they close their
    load record with the reason and their Prefect run ends Cancelled); a second signal, or
    STOP_DEADLINE_S later, stops at once.
    """
    from prefect.runner import Runner

    from flows.ingest import DEFAULT_PARAMS, ingest

    runner = Runner(name="biobridge-up", pause_on_shutdown=False, query_seconds=RUNNER_POLL_S)
    runner.add_flow(
        ingest,
        name=DEPLOYMENT_NAME,
        interval=every,
        tags=DEPLOYMENT_TAGS,
        parameters={"params": DEFAULT_PARAMS.model_dump(mode="json")},
        description=ingest.description,
    )
    ready()
    stopping = threading.Event()
    first_at = [0.0]
    failure: list[BaseException] = []

    def serve() -> None:
        import asyncio

        try:
            asyncio.run(runner.start())
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            failure.append(exc)

    def on_signal(signum: int, _frame: object) -> None:
        if stopping.is_set() and time.monotonic() - first_at[0] < 1.0:
            return  # one Ctrl-C can arrive twice (from the terminal, and forwarded by `uv run`)
        if stopping.is_set():
            print("second signal: stopping now", file=sys.stderr, flush=True)
            raise KeyboardInterrupt
        stopping.set()
        first_at[0] = time.monotonic()
        print(
            f"stopping (runs in flight are cancelled; at most {STOP_DEADLINE_S:.0f}s; "
            "Ctrl-C again to stop now) ...",
            file=sys.stderr,
            flush=True,
        )
        if runner.started and not runner.stopping:
            runner.handle_sigterm()  # schedules its stop on the runner's own loop (thread-safe)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    # The runner's loop runs in a thread of its own, so that the deadline holds however long its
    # teardown takes: past STOP_DEADLINE_S this thread goes on stopping without it (and Runner
    # installs no signal handler outside the main thread: ours stay).
    def interrupt_cli() -> None:
        try:
            if signalled := interrupt_cli_runs():
                print(f"interrupted CLI runs: {', '.join(signalled)}", file=sys.stderr, flush=True)
        except Exception as exc:  # noqa: BLE001 - we are stopping; their runs get Crashed after
            print(f"could not interrupt CLI runs: {exc}", file=sys.stderr, flush=True)

    thread = threading.Thread(target=serve, name="biobridge-runner", daemon=True)
    thread.start()
    cli_stopper = threading.Thread(target=interrupt_cli, name="biobridge-cli-stop", daemon=True)
    try:
        while thread.is_alive():
            thread.join(timeout=0.2)
            if stopping.is_set() and not cli_stopper.is_alive() and cli_stopper.ident is None:
                cli_stopper.start()  # in parallel with the runner's stop, within its deadline
            if stopping.is_set() and runner.started and not runner.stopping:
                runner.handle_sigterm()  # the signal came while it was still starting
            if stopping.is_set() and time.monotonic() - first_at[0] > STOP_DEADLINE_S:
                print("the runner did not stop in time: stopping without it", file=sys.stderr)
                break
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if failure and not stopping.is_set():
        raise StackError(f"the ingest runner stopped: {failure[0]}") from failure[0]
    return first_at[0] or time.monotonic()
