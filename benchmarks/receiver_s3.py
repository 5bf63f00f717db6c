"""The receiver on S3 (moto's server) against a plain loop of the same PUTs, same concurrency.

    apt-get install -y wrk
    uv run python benchmarks/receiver_s3.py [--seconds 10] [--rounds 2] [--connections 32]

moto is slow and runs on the same cores, so the absolute numbers say little: the ratio does.
The "PUT loop" calls `S3Store.put` (one PUT with its SHA-256 checksum and metadata) from
`--connections` threads as fast as moto answers: the most the receiver could reach. The
receiver runs as `biobridge receiver` landing in the same bucket, loaded by wrk with the same
number of connections. A ratio near 1 means requests overlap fully: no lock, no starved pool.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.receiver import BODY, free_port, lua_script, wait_listening  # noqa: E402
from landing.keys import new_key  # noqa: E402
from landing.settings import Settings  # noqa: E402
from landing.store import ObjectMeta, open_store  # noqa: E402

FAKE_AWS = {
    "AWS_ACCESS_KEY_ID": "test-only-key",
    "AWS_SECRET_ACCESS_KEY": "test-only-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def put_loop(url: str, seconds: float, threads: int) -> float:
    """PUTs per second through S3Store.put from `threads` threads."""
    store = open_store(url, Settings(s3_max_pool_connections=max(threads, 10)))
    body = BODY.encode()
    done = 0
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def work() -> None:
        nonlocal done
        n = 0
        while time.monotonic() < stop:
            now = datetime.now(UTC)
            meta = ObjectMeta(
                received_at=now,
                vendor="oura",
                content_type="application/json",
                sha256=hashlib.sha256(body).hexdigest(),
                size=len(body),
                delivery_id="bench",
                delivery_id_source="receiver",
                signature_verified=False,
            )
            store.put(new_key("oura", now), body, meta)
            n += 1
        with lock:
            done += n

    started = time.monotonic()
    workers = [threading.Thread(target=work) for _ in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    return done / (time.monotonic() - started)


def receiver_rps(url: str, seconds: int, connections: int, script: Path) -> dict[str, float]:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "BIOBRIDGE_LANDING_URL": url}
    proc = subprocess.Popen(
        [sys.executable, "-m", "deployments.cli", "receiver", "--port", str(port)],
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_listening(port, proc)
        out = subprocess.run(
            ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "-s", str(script),
             f"http://127.0.0.1:{port}/webhooks/oura"],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=15)
    m = re.search(r"RESULT (.*)", out)
    if m is None:
        raise RuntimeError(out)
    return {k: float(v) for k, v in (kv.split("=") for kv in m.group(1).split())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    os.environ.update(FAKE_AWS)
    moto_port = free_port()
    moto = subprocess.Popen(
        [str(Path(sys.executable).parent / "moto_server"), "-p", str(moto_port)],
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", moto_port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        os.environ["AWS_ENDPOINT_URL_S3"] = f"http://127.0.0.1:{moto_port}"
        import boto3  # type: ignore[import-untyped]

        boto3.client("s3").create_bucket(Bucket="bench-landing")
        url = "s3://bench-landing/landing"
        loops: list[float] = []
        recvs: list[dict[str, float]] = []
        with tempfile.TemporaryDirectory() as tmp:
            script = Path(tmp) / "post.lua"
            script.write_text(lua_script(signed=False))
            for r in range(1, args.rounds + 1):
                loops.append(put_loop(url, args.seconds, args.connections))
                print(f"round {r} PUT loop: {loops[-1]:7.0f} PUT/s", flush=True)
                recvs.append(receiver_rps(url, args.seconds, args.connections, script))
                res = recvs[-1]
                print(
                    f"round {r} receiver: {res['rps']:7.0f} req/s  p50 {res['p50_ms']:.1f} ms  "
                    f"p99 {res['p99_ms']:.1f} ms  errors={res['errors']:.0f} "
                    f"non2xx={res['non2xx']:.0f}",
                    flush=True,
                )
        loop = statistics.median(loops)
        recv = statistics.median(r["rps"] for r in recvs)
        print(f"median: PUT loop {loop:.0f}/s, receiver {recv:.0f}/s, ratio {recv / loop:.2f}")
    finally:
        os.killpg(moto.pid, signal.SIGTERM)
        moto.wait(timeout=15)


if __name__ == "__main__":
    main()
