"""Runs of `biobridge ingest` on a running stack without the start-up tax: a process that has
already imported everything waits for them.

`biobridge up` listens on `<data_dir>/run.sock` and keeps one standby process (`python -m
deployments.runhost`) that has imported Prefect, Polars, Arrow, ADBC, Pandera and the flow
(~3-4 s of imports, done before anyone waits). `biobridge ingest` (still a light process:
settings and the parameters only) hands it the run: the validated parameters, its BIOBRIDGE_*
variables, its working directory and its stdout/stderr (passed over the socket, so the run's
output and progress bar appear in the CLI's terminal). The standby executes it as a run of the
served deployment (`deployments.run.run_here`, the same code as before: it shows in the UI, a
Cancel in the UI stops it), and sends back the exit code. `up` starts the next standby at once.

A Ctrl-C in the CLI is forwarded (the run stops between batches, as before); a CLI that goes away
stops its run the same way. No standby answering (stack starting, a crash) means the CLI runs the
flow in its own process as before. The run process is a fresh interpreter, not a fork: nothing
of Polars' or Prefect's threads is copied into it.
"""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

RUN_SOCKET = "run.sock"
# A standby accepts within this time once it is up; longer means it is still importing (a stack
# just started) or gone: the CLI then runs the flow itself.
ACCEPT_TIMEOUT_S = 20.0
MAX_MESSAGE = 1 << 20
READY = b"ready\n"
# What a run imports, imported by the standby before it waits: the flow and its libraries, and
# what Prefect's engine imports only when a run starts (seen in sys.modules after a first run).
WARM_IMPORTS = (
    "flows.ingest",
    "deployments.run",
    "deployments.progress",
    "ops.api",
    "landing.local_store",
    "prefect.flow_engine",
    "prefect.task_engine",
    "prefect.concurrency.sync",
    "prefect.utilities.visualization",
    "prefect.telemetry.run_telemetry",
    "anyio._backends._asyncio",
)
# Seconds a run whose `up` has gone gets to stop on its own before it exits without the server.
STACK_GONE_GRACE_S = 5.0
# A standby that dies before taking a run this many times in a row is not restarted again.
MAX_QUICK_DEATHS = 3


# --- the CLI's side (stdlib only: it must stay light) ---------------------------------------


def submit(socket_path: Path, params: dict[str, Any]) -> int | None:
    """Run the ingest with `params` on the stack's standby process; its exit code, or None when
    no standby took it (the caller then runs the flow itself)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(ACCEPT_TIMEOUT_S)
    request = {
        "params": params,
        "env": {k: v for k, v in os.environ.items() if k.startswith("BIOBRIDGE_")},
        "cwd": os.getcwd(),
    }
    try:
        sock.connect(str(socket_path))
        reader = sock.makefile("rb")
        # Nothing is sent before a standby says it is there: a request left in the socket after
        # the timeout would be run by the next standby while this command runs it too.
        ready = reader.readline()
    except OSError:  # includes the timeout: no standby (yet)
        sock.close()
        return None
    if ready != READY:
        sock.close()
        return None
    sock.settimeout(None)
    try:
        socket.send_fds(sock, [json.dumps(request).encode() + b"\n"], [1, 2])
        taken = reader.readline()  # {"pid": ...}: the standby has the run
    except OSError:
        taken = b""
    if not taken:
        sock.close()
        print("biobridge ingest: the stack's standby process did not take the run", file=sys.stderr)
        return 1

    def forward(_signum: int, _frame: object) -> None:
        with suppress(OSError):
            sock.sendall(b"interrupt\n")

    previous = signal.signal(signal.SIGINT, forward)
    try:
        ended = reader.readline()
    finally:
        signal.signal(signal.SIGINT, previous)
        sock.close()
    if not ended:
        print(
            "biobridge ingest: the run's process ended without an exit code (killed?); its load "
            "record says how far it got, the other files load on the next run",
            file=sys.stderr,
        )
        return 1
    return int(json.loads(ended)["exit"])


# --- `up`'s side --------------------------------------------------------------------------


class RunHost:
    """What `up` knows of its CLI runs: the socket, and the processes executing runs."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.busy: list[subprocess.Popen[bytes]] = []

    def wait_runs(self, timeout_s: float) -> None:
        """Wait up to `timeout_s` for the runs in flight to end (`up` interrupted them): their
        last state reaches the Prefect server before `up` stops it."""
        deadline = time.monotonic() + timeout_s
        for proc in list(self.busy):
            with suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))


@contextmanager
def run_host(data_dir: Path, *, env: dict[str, str]) -> Iterator[RunHost]:
    """Listen on `<data_dir>/run.sock` and keep a standby process for CLI runs while the stack
    runs, with the environment `env` (no socket when its path is too long for a unix socket:
    `RunHost.path` is None)."""
    path = (data_dir / RUN_SOCKET).resolve()
    if len(str(path).encode()) > 100:
        yield RunHost(None)
        return
    host = RunHost(path)
    path.unlink(missing_ok=True)  # a killed `up`'s: the data dir lock is ours
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o177)  # only this user hands runs to (and gets output from) the stack
    try:
        listener.bind(str(path))
    finally:
        os.umask(old_umask)
    listener.listen(16)
    notify_r, notify_w = os.pipe()
    stop = threading.Event()
    standby: list[subprocess.Popen[bytes]] = []
    busy = host.busy  # executing a CLI run: reaped when they end

    def spawn() -> None:
        from deployments.stack import die_with_parent

        fds = (listener.fileno(), notify_w)
        standby[:] = [
            subprocess.Popen(  # noqa: S603 - fixed argv
                [sys.executable, "-m", "deployments.runhost", *map(str, fds)],
                pass_fds=fds,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,  # the terminal's Ctrl-C reaches `up`, not the runs
                preexec_fn=die_with_parent,  # an idle standby dies with `up`
            )
        ]

    def keep_one() -> None:
        import select

        deaths = 0
        while not stop.is_set():
            readable, _, _ = select.select([notify_r], [], [], 0.5)
            if stop.is_set():
                return
            busy[:] = [p for p in busy if p.poll() is None]
            if readable:
                os.read(notify_r, 64)
                deaths = 0
                busy.append(standby[0])
                spawn()  # the standby took a run: the next one gets ready now
            elif standby[0].poll() is not None:
                deaths += 1
                if deaths >= MAX_QUICK_DEATHS:
                    print(
                        f"the standby for CLI runs exited {deaths} times (code "
                        f"{standby[0].returncode}): `biobridge ingest` runs in its own process",
                        file=sys.stderr,
                        flush=True,
                    )
                    listener.close()
                    path.unlink(missing_ok=True)
                    return
                spawn()

    spawn()
    thread = threading.Thread(target=keep_one, name="biobridge-run-host", daemon=True)
    thread.start()
    try:
        yield host
    finally:
        stop.set()
        thread.join(timeout=2)
        path.unlink(missing_ok=True)
        with suppress(OSError):
            listener.close()
        for proc in standby:  # idle: a run's process has left `standby` and finishes its run
            proc.terminate()
            try:
                proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        os.close(notify_r)
        os.close(notify_w)


# --- the standby process ------------------------------------------------------------------


def standby_main(listen_fd: int, notify_fd: int) -> int:
    """Import what a run needs, take one run from the socket, execute it, send its exit code."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    import importlib

    for name in WARM_IMPORTS:
        importlib.import_module(name)

    listener = socket.socket(fileno=listen_fd)
    while True:
        conn, _ = listener.accept()
        try:
            conn.sendall(READY)
        except OSError:  # that command gave up waiting
            conn.close()
            continue
        request, fds = _receive(conn)
        if request is not None:
            break
        for fd in fds:
            os.close(fd)
        conn.close()
    listener.close()
    os.write(notify_fd, b"1")  # `up` starts the next standby
    os.close(notify_fd)
    _survive_parent()  # a run in flight finishes (or stops) on its own, as a CLI run did
    return execute(conn, fds, request)


def _receive(conn: socket.socket) -> tuple[dict[str, Any] | None, list[int]]:
    try:
        conn.settimeout(10)
        msg, fds, _flags, _addr = socket.recv_fds(conn, MAX_MESSAGE, 2)
        while msg and not msg.endswith(b"\n") and len(msg) < MAX_MESSAGE:
            more = conn.recv(MAX_MESSAGE)
            if not more:
                break
            msg += more
        conn.settimeout(None)
        if len(fds) != 2 or not msg.endswith(b"\n"):
            return None, fds
        return json.loads(msg), fds
    except (OSError, ValueError):
        return None, []


def _survive_parent() -> None:
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, 0)  # PR_SET_PDEATHSIG off


def execute(conn: socket.socket, fds: list[int], request: dict[str, Any]) -> int:
    """Run the requested ingest with the CLI's stdout/stderr, environment and directory."""
    for fd, target in zip(fds, (1, 2), strict=True):
        os.dup2(fd, target)
        os.close(fd)
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(line_buffering=True)
    with suppress(OSError):
        os.chdir(request["cwd"])
    os.environ.update(request["env"])
    from flows.in_flight import request_stop
    from tasks.runtime import reset

    reset()  # settings are read again, with the CLI's variables
    conn.sendall(json.dumps({"pid": os.getpid()}).encode() + b"\n")
    finished = threading.Event()

    def watch() -> None:
        """A Ctrl-C in the CLI, or the CLI gone: stop the run as a Ctrl-C does."""
        reader = conn.makefile("rb")
        while not finished.is_set():
            try:
                line = reader.readline()
            except OSError:
                line = b""
            if finished.is_set():
                return
            request_stop()
            if not line:
                return
            time.sleep(0.2)  # one Ctrl-C can arrive twice (the terminal, `uv run`)

    def reply(code: int) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        # Let go of the CLI's stdout/stderr before saying we are done: whoever reads them (a
        # pipe, `| tee`) sees their end now, not after this interpreter's teardown (~1 s).
        devnull = os.open(os.devnull, os.O_WRONLY)
        for target in (1, 2):
            os.dup2(devnull, target)
        os.close(devnull)
        with suppress(OSError):
            conn.sendall(json.dumps({"exit": code}).encode() + b"\n")
            conn.close()

    stack_pid = os.getppid()

    def outlive_stack() -> None:
        """`up` gone (stopped, killed) means its Prefect server is gone: the run cannot go on or
        record its end (Prefect's client would retry for a minute). Stop it, give it
        STACK_GONE_GRACE_S to close its load record, then tell the CLI and exit: the next `up`
        marks the run Crashed, the next run closes a load record left open."""
        while not finished.wait(0.5):
            if os.getppid() == stack_pid:
                continue
            request_stop()
            if finished.wait(STACK_GONE_GRACE_S):
                return
            print(
                "interrupted: `biobridge up` stopped before the run could record its end; the "
                "next `up` marks it Crashed; its committed batches stand and the other files "
                "load on the next run",
                file=sys.stderr,
            )
            reply(130)
            os._exit(130)

    threading.Thread(target=watch, name="cli-watch", daemon=True).start()
    threading.Thread(target=outlive_stack, name="stack-watch", daemon=True).start()
    code = _run(request["params"])
    finished.set()
    reply(code)
    return code


def _run(raw: dict[str, Any]) -> int:
    """`deployments.run.run_here` on the stack, with the CLI's error handling (`cli.main`)."""
    from deployments.cli import explain
    from deployments.progress import chunk_progress
    from deployments.run import run_here
    from flows.params import IngestParams

    try:
        params = IngestParams.model_validate(raw)
        with chunk_progress(params):
            return run_here(params, api=os.environ["PREFECT_API_URL"], of_deployment=True)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # noqa: BLE001 - one line with the fix, as the CLI prints it
        print(f"biobridge ingest: {explain(exc)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(standby_main(int(sys.argv[1]), int(sys.argv[2])))
