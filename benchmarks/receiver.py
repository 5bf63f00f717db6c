"""Receiver throughput and latency against a no-op ASGI app on the same server stack, with wrk.

    apt-get install -y wrk        # Debian's package; the load generator, in C
    uv run python benchmarks/receiver.py [--seconds 10] [--rounds 3] [--connections 32]
                                         [--workers 1] [--stack edge|h11] [--signed]

Each round runs the no-op app, then the receiver (local store, in a temporary folder, with its
group commit), each in a fresh process on the same uvicorn stack, worker count and
edge limits (`landing.serving`), under `wrk -t2 -c<connections> -d<seconds>s` posting the same
Oura body. It prints each round, then the medians with the spread (min-max) over the rounds
and the ratio of the median requests/s, with each server's CPU time per request. `--stack h11`
serves both with uvicorn's pure-Python h11 parser on asyncio instead (what the receiver ran on
before uvicorn[standard]). `--signed` sets an Oura client secret on the receiver and posts the
Oura notification example with a valid `x-oura-signature` over a timestamp taken at start (the
default 300 s replay window covers a 3-round run), so every request pays the HMAC check.

A Python load generator on the same two cores caps the no-op app and hides the gap: use wrk.

The landed files are deleted when the run ends. On ext4 without a journal (this VM's root file
system) creating files right after a large deletion is slow for a few minutes (see
docs/receiver-durability.md): leave a few minutes between runs, or land elsewhere with `--dir`.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BODY = (
    '{"event_type":"daily_readiness","user_id":"athlete_0324","timestamp":"2025-07-10T06:41:48Z",'
    '"data":{"readiness_score":92,"hrv_balance":75,"body_temperature":0.94,'
    '"resting_heart_rate":54,"respiratory_rate":14.0,"sleep_score":47,"activity_balance":38}}'
)
SIGNED_BODY = json.dumps(  # compact, so it fits the wrk script's one-line string
    json.loads((ROOT / "deployments" / "examples" / "oura_webhook_event.json").read_bytes()),
    separators=(",", ":"),
).encode()
BENCH_SECRET = "bench-only-oura-secret"  # a throwaway key for this benchmark
LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
%s
wrk.body = '%s'
done = function(summary, latency, requests)
  io.write(string.format(
    "RESULT reqs=%%d rps=%%.1f p50_ms=%%.2f p99_ms=%%.2f errors=%%d non2xx=%%d\\n",
    summary.requests, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.errors.status))
end
"""


async def noop_app(scope, receive, send) -> None:  # type: ignore[no-untyped-def]
    """Read the whole body, answer 202 with a small JSON body: the ceiling for any receiver."""
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    payload = b'{"status":"accepted"}'
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(payload))]
    await send({"type": "http.response.start", "status": 202, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


def lua_script(*, signed: bool) -> str:
    """The wrk script: the generic body, or an Oura notification signed now."""
    if not signed:
        return LUA % ("", BODY)
    import hashlib
    import hmac

    stamp = str(int(time.time()))
    mac = hmac.new(BENCH_SECRET.encode(), stamp.encode() + SIGNED_BODY, hashlib.sha256)
    headers = (
        f'wrk.headers["x-oura-timestamp"] = "{stamp}"\n'
        f'wrk.headers["x-oura-signature"] = "{mac.hexdigest().upper()}"'
    )
    return LUA % (headers, SIGNED_BODY.decode())


def serve(target: str, port: int, folder: str, workers: int, stack: str) -> None:
    """Run one target in this process until SIGTERM."""
    import logging

    import uvicorn

    from landing.receiver import create_app
    from landing.serving import run
    from landing.settings import Settings
    from landing.store import open_store

    logging.basicConfig(level=logging.WARNING, format="%(message)s")  # no access log lines
    settings = Settings(
        landing_url=Path(folder).as_uri(), host="127.0.0.1", port=port, workers=workers
    )
    store = open_store(settings.landing_location(), settings)
    app = noop_app if target == "noop" else create_app(settings, store)
    if stack == "h11":
        config = uvicorn.Config(
            app, host="127.0.0.1", port=port, http="h11", loop="asyncio", workers=1,
            access_log=False, lifespan="off", log_level="warning",
        )  # fmt: skip
        uvicorn.Server(config).run()
        return
    run(app, settings)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def one_run(target: str, args: argparse.Namespace, script: Path, keep: Path) -> dict[str, float]:
    port = free_port()
    # Landed files are deleted only at the very end: ext4 allocates inodes slowly next to many
    # just-deleted ones (recently_deleted() in ext4_create), which would slow the next round.
    folder = tempfile.mkdtemp(dir=keep)
    cmd = [
        sys.executable, __file__, "--serve", target, "--port", str(port), "--dir", folder,
        "--workers", str(args.workers), "--stack", args.stack,
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if args.signed:
        env["BIOBRIDGE_OURA_CLIENT_SECRET"] = BENCH_SECRET
    proc = subprocess.Popen(
        cmd,
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_listening(port, proc)
        wrk = ["wrk", f"-t{args.threads}", f"-c{args.connections}", f"-d{args.seconds}s"]
        url = f"http://127.0.0.1:{port}/webhooks/oura"
        cpu_before = cpu_seconds(proc.pid)
        out = subprocess.run(
            [*wrk, "-s", str(script), url], capture_output=True, text=True, check=True
        ).stdout
        cpu = diff(cpu_seconds(proc.pid), cpu_before)
        drain_s = wait_drained(Path(folder)) if target == "receiver" else 0.0
        total_cpu = diff(cpu_seconds(proc.pid), cpu_before)
        landed = sum(1 for p in Path(folder).rglob("*.json") if "meta" not in p.name)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    m = re.search(r"RESULT (.*)", out)
    if m is None:
        raise RuntimeError(f"wrk printed no RESULT line:\n{out}")
    result = {k: float(v) for k, v in (kv.split("=") for kv in m.group(1).split())}
    result["landed"] = landed
    result["drain_s"] = drain_s
    per = 1e6 / max(result["reqs"], 1)
    result["cpu_us"] = cpu["worker"] * per
    result["sync_us"] = cpu["syncer"] * per
    result["mat_us"] = cpu["materializer"] * per
    result["all_us"] = sum(total_cpu.values()) * per
    result["all_mat_us"] = total_cpu["materializer"] * per
    return result


def cpu_seconds(pid: int) -> dict[str, float]:
    """User + system CPU seconds so far of `pid` and all its descendants, by role: the workers
    (the server processes), the syncers and the materializers (told apart by the process name
    the log helpers set, `landing.materializer.SYNCER`/`MATERIALIZER`). Every thread of each
    process counts (/proc/PID/stat sums them), and so do the children it has reaped."""
    tick = os.sysconf("SC_CLK_TCK")
    used = {"worker": 0.0, "syncer": 0.0, "materializer": 0.0}
    roles = {"bb-syncer": "syncer", "bb-materializer": "materializer"}
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            name, _, rest = Path(f"/proc/{p}/stat").read_text().partition(" (")[2].rpartition(")")
            fields = rest.split()
            # utime, stime, cutime, cstime
            used[roles.get(name, "worker")] += sum(int(f) for f in fields[11:15]) / tick
            for task in Path(f"/proc/{p}/task").iterdir():  # children of any of its threads
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, ValueError, IndexError):
            continue
    return used


def wait_drained(folder: Path, timeout_s: float = 600.0) -> float:
    """Seconds until every logged record is an object (the materializer caught up)."""
    from landing.commit_log import backlog
    from landing.local_store import LocalStore

    store = LocalStore(folder)
    started = time.monotonic()
    while backlog(store).records and time.monotonic() - started < timeout_s:
        time.sleep(0.2)
    return time.monotonic() - started


def diff(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {role: after[role] - before[role] for role in after}


def wait_listening(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("the server did not start") from None
            time.sleep(0.1)


def summary(name: str, runs: list[dict[str, float]]) -> str:
    def stat(key: str, fmt: str) -> str:
        xs = [r[key] for r in runs]
        return f"{statistics.median(xs):{fmt}} ({min(xs):{fmt}}-{max(xs):{fmt}})"

    line = (
        f"{name:>8}: {stat('rps', '.0f')} req/s  p50 {stat('p50_ms', '.1f')} ms  "
        f"p99 {stat('p99_ms', '.1f')} ms  cpu {stat('cpu_us', '.0f')} us/req"
    )
    if name == "receiver":
        line += (
            f" (workers)\n{'':>10}syncer {stat('sync_us', '.0f')}, materializer (until drained)"
            f" {stat('all_mat_us', '.0f')}, all processes {stat('all_us', '.0f')} us/req"
        )
    return line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--workers", type=int, default=1, help="server processes (both)")
    parser.add_argument("--stack", choices=["edge", "h11"], default="edge")
    parser.add_argument("--serve", choices=["receiver", "noop"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--dir", help="folder for the landed files (default: the temp folder)")
    parser.add_argument(
        "--signed", action="store_true", help="post a signed Oura notification (secret set)"
    )
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port, args.dir, args.workers, args.stack)
        return
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install -y wrk (Debian's package)")

    print(
        f"wrk -t{args.threads} -c{args.connections} -d{args.seconds}s, {args.rounds} rounds, "
        f"{args.workers} worker(s), stack {args.stack}, {os.cpu_count()} CPUs, "
        f"{len(SIGNED_BODY if args.signed else BODY)}-byte body"
        + (", Oura-signed" if args.signed else "")
    )
    runs: dict[str, list[dict[str, float]]] = {"noop": [], "receiver": []}
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        script = Path(tmp) / "post.lua"
        script.write_text(lua_script(signed=args.signed))
        for r in range(1, args.rounds + 1):
            for target in ("noop", "receiver"):
                res = one_run(target, args, script, Path(tmp))
                runs[target].append(res)
                extra = (
                    f" landed={res['landed']:.0f}; during the run: syncer {res['sync_us']:.0f}"
                    f" us/req, materializer {res['mat_us']:.0f} us/req; drained "
                    f"{res['drain_s']:.1f} s after: materializer {res['all_mat_us']:.0f} us/req,"
                    f" all processes {res['all_us']:.0f} us/req"
                    if target == "receiver"
                    else ""
                )
                print(
                    f"round {r} {target:>8}: {res['rps']:7.0f} req/s  p50 {res['p50_ms']:6.2f} ms"
                    f"  p99 {res['p99_ms']:6.2f} ms  cpu {res['cpu_us']:4.0f} us/req  "
                    f"errors={res['errors']:.0f} "
                    f"non2xx={res['non2xx']:.0f}{extra}",
                    flush=True,
                )
    print("medians (min-max over rounds):")
    for target, rs in runs.items():
        print(summary(target, rs))
    noop = statistics.median(r["rps"] for r in runs["noop"])
    recv = statistics.median(r["rps"] for r in runs["receiver"])
    ratios = [b["rps"] / a["rps"] for a, b in zip(runs["noop"], runs["receiver"], strict=True)]
    print(
        f"ratio of medians receiver/noop: {recv / noop:.3f} "
        f"(per round {min(ratios):.3f}-{max(ratios):.3f})"
    )


if __name__ == "__main__":
    main()
