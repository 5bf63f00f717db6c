"""Soak: many webhooks over real HTTP while ingest runs repeatedly and faults are injected.

    uv run python benchmarks/soak.py [--n 20000] [--clients 4] [--seed 1] [--database-url URL]

What it does:

1. Creates a throwaway database `bb_soak_<random>` on the machine's Postgres (dropped at the end)
   and a temporary landing folder (tmpfs when there is one).
2. Starts `biobridge receiver` as a child process; `--clients` threads POST `--n` generic bodies
   (7 metrics each, no two sharing a measurement key) and retry, like vendors do, on connection
   errors and 503 with capped exponential backoff and jitter until they get a 202.
3. Meanwhile runs `biobridge ingest` as child processes, one after another every few seconds,
   with Postgres reached through a TCP proxy of this script, and injects faults at random
   (seeded): SIGKILL of an ingest child mid-run, every Postgres connection cut, SIGKILL of the
   receiver (restarted on the same port).
4. At the end: a clean ingest (no proxy, no faults), then `ops.verify.verify` must report no
   discrepancy, every acknowledged object key must be `loaded` in the ledger, and
   `biometric_events` must hold exactly 7 rows per sent body.

Measured here (2 cores, seed 1, 4 clients): N=20,000 in 207 s; N=100,000 in 849 s (posting
653 s) with 11 ingest SIGKILLs, 33 Postgres cuts and 40 receiver SIGKILLs: all acknowledged,
verify clean. Logs of a failed soak stay in the work folder.
"""

from __future__ import annotations

import argparse
import collections
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import closing
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import orjson

from landing.store import open_store
from ops.verify import verify
from warehouse.migrate import apply_migrations
from warehouse.postgres import connect, display_url, url_with_database

DEFAULT_SERVER_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
ROOT = Path(__file__).resolve().parent.parent
ROWS_PER_BODY = 7
USERS = 1_000
ACK_DEADLINE_S = 5  # settle window 10 s: the final ingest need not wait 10 minutes
FIRST_DAY = datetime(2025, 1, 1, tzinfo=UTC)


class TcpProxy:
    """127.0.0.1:<port> -> target; `cut()` drops every connection and refuses new ones."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self._lock = threading.Lock()
        self._conns: list[socket.socket] = []
        self._listener: socket.socket | None = None
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = int(probe.getsockname()[1])

    def restore(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        with self._lock:
            if self._listener is not None:
                _close(self._listener)
                self._listener = None
            for s in self._conns:
                _close(s)
            self._conns.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                if listener.fileno() == -1:
                    return
                continue
            upstream.settimeout(None)
            with self._lock:
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            _close(src)
            _close(dst)


def _close(s: socket.socket) -> None:
    try:
        s.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    s.close()


def body_of(n: int) -> bytes:
    """Generic shape, 7 metrics; body n is user n % USERS at second n // USERS (unique keys)."""
    stamp = FIRST_DAY + timedelta(seconds=n // USERS)
    return orjson.dumps(
        {
            "event_type": "daily_readiness",
            "user_id": f"soak_{n % USERS:04d}",
            "timestamp": stamp.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "data": {
                "readiness_score": 60 + n % 40,
                "hrv_balance": 75.5,
                "body_temperature": 36.4,
                "resting_heart_rate": 45 + n % 20,
                "respiratory_rate": 13.5,
                "sleep_score": 88,
                "activity_balance": 91,
            },
        }
    )


@dataclass
class Tally:
    lock: threading.Lock = field(default_factory=threading.Lock)
    acked: dict[int, str] = field(default_factory=dict)
    retries: int = 0
    gave_up: int = 0
    faults: collections.Counter[str] = field(default_factory=collections.Counter)
    ingest_runs: collections.Counter[str] = field(default_factory=collections.Counter)


class Receiver:
    """`biobridge receiver` as a child process that can be SIGKILLed and restarted."""

    def __init__(self, env: dict[str, str], port: int, log: Path) -> None:
        self.env, self.port, self.log = env, port, log
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "deployments.cli", "receiver", "--port", str(self.port)],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.05)
        raise RuntimeError(f"the receiver did not start; see {self.log}")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)


def post_all(url: str, indices: list[int], tally: Tally, stop: threading.Event) -> None:
    """POST each body until a 202, backing off on connection errors and 503 like a vendor."""
    rng = random.Random(indices[0] if indices else 0)
    with httpx.Client(base_url=url, timeout=30) as client:
        for n in indices:
            body = body_of(n)
            for attempt in range(200):
                if stop.is_set():
                    return
                try:
                    r = client.post(
                        "/webhooks/generic", content=body, headers={"X-Request-Id": f"soak-{n}"}
                    )
                    if r.status_code == 202:
                        with tally.lock:
                            tally.acked[n] = r.json()["object_key"]
                        break
                    if r.status_code != 503:
                        raise RuntimeError(f"body {n}: unexpected {r.status_code} {r.text}")
                except httpx.TransportError:
                    pass
                with tally.lock:
                    tally.retries += 1
                time.sleep(min(2.0, 0.05 * 2**attempt) * (0.5 + rng.random()))
            else:
                with tally.lock:
                    tally.gave_up += 1


def run_ingest(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """Start one `biobridge ingest` in its own process group (its Prefect API dies with it)."""
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "deployments.cli", "ingest"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the process group this script started for `proc` (the child and its helpers)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=30)


def ingest_loop(
    env: dict[str, str], log: Path, tally: Tally, rng: random.Random, done: threading.Event
) -> None:
    """Ingest runs one after another until `done`; some are SIGKILLed mid-run."""
    for _ in range(10_000):
        if done.is_set():
            return
        proc = run_ingest(env, log)
        kill_at = time.monotonic() + rng.uniform(3, 20) if rng.random() < 0.3 else None
        deadline = time.monotonic() + 300
        while proc.poll() is None:
            if kill_at is not None and time.monotonic() > kill_at:
                kill_group(proc)
                with tally.lock:
                    tally.faults["ingest SIGKILL"] += 1
                    tally.ingest_runs["killed"] += 1
                break
            if time.monotonic() > deadline:
                kill_group(proc)
                with tally.lock:
                    tally.ingest_runs["timed out"] += 1
                break
            time.sleep(0.1)
        else:
            kill_group(proc)  # reap helpers left in the group, if any
            with tally.lock:
                tally.ingest_runs["completed" if proc.returncode == 0 else "failed"] += 1
        done.wait(rng.uniform(1, 4))


def fault_loop(
    proxy: TcpProxy, receiver: Receiver, tally: Tally, rng: random.Random, done: threading.Event
) -> None:
    """Every few seconds: cut Postgres connections, or SIGKILL and restart the receiver."""
    while not done.wait(rng.uniform(3, 10)):
        if rng.random() < 0.5:
            proxy.cut()
            time.sleep(rng.uniform(0.2, 2))
            proxy.restore()
            with tally.lock:
                tally.faults["postgres cut"] += 1
        else:
            receiver.kill()
            time.sleep(rng.uniform(0, 1))
            receiver.start()
            with tally.lock:
                tally.faults["receiver SIGKILL"] += 1


def _admin(server_url: str, statement: str) -> None:
    with connect(server_url, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(statement)


def scalar(db_url: str, sql: str, params: tuple[object, ...] | None = None) -> object:
    with closing(connect(db_url)) as conn, conn.cursor() as cur:
        cur.execute(sql, params)
        row = cur.fetchone()
        return row[0] if row else None


def soak(args: argparse.Namespace, work: Path, db_url: str) -> bool:
    started = time.monotonic()
    tally = Tally()
    rng = random.Random(args.seed)
    landing = (work / "landing").as_uri()
    base_env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "BIOBRIDGE_LANDING_URL": landing,
        "BIOBRIDGE_DATA_DIR": str(work / "data"),
        "BIOBRIDGE_ACK_DEADLINE_S": str(ACK_DEADLINE_S),
        "BIOBRIDGE_RETRY_BACKOFF_S": "0.5",
    }
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    receiver = Receiver(base_env, port, work / "receiver.log")
    receiver.start()
    proxy = TcpProxy(("127.0.0.1", args.pg_port))
    proxy.restore()
    proxy_url = db_url.replace(f"127.0.0.1:{args.pg_port}/", f"127.0.0.1:{proxy.port}/", 1)
    if proxy_url == db_url:
        raise SystemExit(f"--database-url must name 127.0.0.1:{args.pg_port} to be proxied")
    stop, done = threading.Event(), threading.Event()
    ingest_env = {**base_env, "BIOBRIDGE_DATABASE_URL": proxy_url}
    background = [
        threading.Thread(
            target=ingest_loop, args=(ingest_env, work / "ingest.log", tally, rng, done)
        ),
        threading.Thread(
            target=fault_loop, args=(proxy, receiver, tally, random.Random(args.seed + 1), done)
        ),
    ]
    for t in background:
        t.start()
    clients = [
        threading.Thread(
            target=post_all, args=(receiver.url, list(range(c, args.n, args.clients)), tally, stop)
        )
        for c in range(args.clients)
    ]
    try:
        for t in clients:
            t.start()
        for t in clients:
            t.join()
        posted_s = time.monotonic() - started
    finally:
        stop.set()
        done.set()
        for t in background:
            t.join()
        proxy.cut()
    receiver.kill()

    time.sleep(2 * ACK_DEADLINE_S + 1)  # every object outside the settle window
    final = subprocess.run(
        [sys.executable, "-m", "deployments.cli", "ingest"],
        env={**base_env, "BIOBRIDGE_DATABASE_URL": db_url},
        capture_output=True,
        text=True,
        check=False,
    )
    with connect(db_url) as conn:
        report = verify(conn, open_store(landing))
        with conn.cursor() as cur:
            cur.execute(
                "SELECT state, count(*) FROM biobridge.landed_files "
                "WHERE object_key = ANY($1) GROUP BY 1",
                (list(tally.acked.values()),),
            )
            acked_states = dict(cur.fetchall())
            cur.execute("SELECT state, count(*) FROM biobridge.landed_files GROUP BY 1")
            ledger = dict(cur.fetchall())
            cur.execute("SELECT count(*) FROM biometric_events")
            (rows,) = cur.fetchone()
    wall = time.monotonic() - started
    faults = ", ".join(f"{n} {k}" for k, n in sorted(tally.faults.items())) or "none"
    runs = ", ".join(f"{n} {k}" for k, n in sorted(tally.ingest_runs.items()))
    print(f"N={args.n:,} clients={args.clients} seed={args.seed}")
    print(f"faults injected: {faults}")
    print(f"ingest runs during the soak: {runs}; final clean ingest exit {final.returncode}")
    print(
        f"sent {args.n:,}, acknowledged {len(tally.acked):,}, gave up {tally.gave_up}, "
        f"retries {tally.retries:,}; posting took {posted_s:.0f} s"
    )
    print(f"ledger: {dict(sorted(ledger.items()))}; acknowledged keys: {acked_states}")
    print(f"biometric_events rows {rows:,} (expected {ROWS_PER_BODY * args.n:,})")
    print(
        f"verify: {'OK' if report.ok else 'FAILED'} ({len(report.discrepancies)} discrepancies; "
        f"{report.keys_present:,} keys present, {report.keys_superseded:,} superseded, "
        f"{report.keys_lost} lost, {report.duplicate_keys} duplicated)"
    )
    for d in report.discrepancies[:20]:
        print(f"  {d}")
    print(f"wall time {wall:.0f} s")
    ok = (
        report.ok
        and final.returncode == 0
        and len(tally.acked) == args.n
        and acked_states == {"loaded": args.n}
        and rows == ROWS_PER_BODY * args.n
    )
    if final.returncode != 0:
        print(final.stdout[-3000:], final.stderr[-3000:])
    print("SOAK OK" if ok else "SOAK FAILED")
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000, help="webhooks to deliver")
    parser.add_argument("--clients", type=int, default=4, help="concurrent client threads")
    parser.add_argument("--seed", type=int, default=1, help="seed of the fault schedule")
    parser.add_argument("--database-url", default=DEFAULT_SERVER_URL)
    parser.add_argument("--pg-port", type=int, default=5432, help="Postgres TCP port to proxy")
    parser.add_argument(
        "--work-dir", type=Path, default=Path("/dev/shm") if Path("/dev/shm").is_dir() else None
    )
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bb-soak-", dir=args.work_dir))
    database = f"bb_soak_{secrets.token_hex(4)}"
    _admin(args.database_url, f"CREATE DATABASE {database}")
    ok = False
    try:
        db_url = url_with_database(args.database_url, database)
        apply_migrations(db_url)
        print(f"database {database} on {display_url(args.database_url)}, folder {work}")
        ok = soak(args, work, db_url)
    finally:
        _admin(args.database_url, f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
        if ok:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"logs kept in {work}", file=sys.stderr)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
