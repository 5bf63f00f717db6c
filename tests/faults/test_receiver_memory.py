"""Issue 4: the receiver's memory stays bounded under hostile input (oversize bodies with and
without Content-Length, slow-drip clients, deeply nested JSON, big-but-allowed arrays), and it
still answers afterwards."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.faults.helpers import receiver_child
from tests.helpers import EXAMPLES

pytestmark = pytest.mark.slow

LIMIT = 1024 * 1024
BODY_TIMEOUT_S = 3.0
RSS_GROWTH_BOUND = 64 * 1024 * 1024
GENERIC = (EXAMPLES / "generic_daily_readiness.json").read_bytes()


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    with receiver_child(
        BIOBRIDGE_LANDING_URL=(tmp_path / "landing").as_uri(),
        BIOBRIDGE_DATA_DIR=str(tmp_path / "data"),
        BIOBRIDGE_MAX_BODY_BYTES=str(LIMIT),
        BIOBRIDGE_BODY_TIMEOUT_S=str(BODY_TIMEOUT_S),
    ) as child:
        yield child


def raw_post(port: int, head: bytes, body: bytes) -> bytes:
    """Send a request on a raw socket, ignoring a server that stops reading; return the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
        try:
            sock.sendall(head + body)
        except OSError:
            pass  # the server answered 413 and closed before the body was sent: expected
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except OSError:
            pass
        return answer


def oversize_with_length(port: int) -> bytes:
    body = b"[" + b"1," * LIMIT + b"1]"
    head = (
        b"POST /webhooks/garmin HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Connection: close\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n"
    )
    return raw_post(port, head, body)


def oversize_chunked(url: str) -> int:
    def chunks() -> Iterator[bytes]:
        yield b"["
        for _ in range(2 * LIMIT // 65536 + 1):
            yield b"1," * 32768
        yield b"1]"

    try:
        return httpx.post(f"{url}/webhooks/garmin", content=chunks(), timeout=15).status_code
    except httpx.HTTPError:
        return 413  # the server may close while we still send: it refused the body either way


def slow_drip(port: int, seconds: float) -> bytes:
    """Claim a 100 kB body, send one byte a second, close after `seconds`."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(
            b"POST /webhooks/oura HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100000\r\n\r\n["
        )
        deadline = time.monotonic() + seconds
        answer = b""
        sock.setblocking(False)
        while time.monotonic() < deadline:
            try:
                sock.send(b"1")
                answer += sock.recv(4096)
            except BlockingIOError:
                pass
            except OSError:
                break
            time.sleep(1)
        return answer


def test_rss_stays_bounded_under_a_hostile_barrage(
    receiver: tuple[subprocess.Popen[bytes], str],
) -> None:
    proc, url = receiver
    port = int(url.rsplit(":", 1)[1])
    nested = b"[" * (LIMIT // 4) + b"]" * (LIMIT // 4)
    big_array = b"[" + b"1," * (LIMIT // 2 - 2) + b"1]"
    assert len(big_array) < LIMIT
    with httpx.Client(base_url=url, timeout=15) as client:
        for _ in range(5):  # warm up: imports, first writes, buffers
            assert client.post("/webhooks/generic", content=GENERIC).status_code == 202
            assert client.post("/webhooks/generic", content=big_array).status_code == 202
        before = rss_bytes(proc.pid)
        started = time.monotonic()

        with ThreadPoolExecutor(max_workers=12) as pool:
            drips = [pool.submit(slow_drip, port, BODY_TIMEOUT_S + 2) for _ in range(4)]
            with_length = [pool.submit(oversize_with_length, port) for _ in range(40)]
            chunked = [pool.submit(oversize_chunked, url) for _ in range(40)]
            deep = [
                pool.submit(lambda: client.post("/webhooks/oura", content=nested).status_code)
                for _ in range(20)
            ]
            big = [
                pool.submit(lambda: client.post("/webhooks/generic", content=big_array).status_code)
                for _ in range(30)
            ]
            peak = before
            while not all(f.done() for f in [*drips, *with_length, *chunked, *deep, *big]):
                peak = max(peak, rss_bytes(proc.pid))
                time.sleep(0.05)
                assert time.monotonic() - started < 30, "the barrage did not finish in 30 s"

        for answer in (f.result() for f in with_length):
            assert answer == b"" or answer.startswith(b"HTTP/1.1 413 "), answer[:200]
        assert {f.result() for f in chunked} == {413}
        assert {f.result() for f in deep} == {400}
        assert {f.result() for f in big} == {202}
        for answer in (f.result() for f in drips):
            assert answer == b"" or answer.startswith(b"HTTP/1.1 408 "), answer[:200]

        after = rss_bytes(proc.pid)
        peak = max(peak, after)
        growth = after - before
        assert growth < RSS_GROWTH_BOUND, (
            f"RSS grew {growth / 2**20:.0f} MiB (peak {peak / 2**20:.0f})"
        )
        assert peak - before < 2 * RSS_GROWTH_BOUND, f"peak {peak / 2**20:.0f} MiB"
        assert client.get("/healthz").status_code == 200
        assert client.post("/webhooks/generic", content=GENERIC).status_code == 202
