"""Issue 10.4: the receiver's edge against hostile clients, on the real `biobridge receiver`.

Oversize bodies are drained so the client reads its 413; request heads have a deadline and size
limits whatever the packet boundaries; idle connections are closed; orphan metadata is swept.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from landing.keys import new_key
from landing.local_store import META_SUFFIX, LocalStore
from landing.store import ObjectMeta
from tests.faults.helpers import receiver_child
from tests.faults.test_receiver_memory import rss_bytes
from tests.helpers import EXAMPLES

GENERIC = (EXAMPLES / "generic_daily_readiness.json").read_bytes()
LIMIT = 1024 * 1024
HEAD_TIMEOUT_S = 3.0


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    with receiver_child(
        BIOBRIDGE_LANDING_URL=(tmp_path / "landing").as_uri(),
        BIOBRIDGE_DATA_DIR=str(tmp_path / "data"),
        BIOBRIDGE_MAX_BODY_BYTES=str(LIMIT),
        BIOBRIDGE_HEAD_TIMEOUT_S=str(HEAD_TIMEOUT_S),
        BIOBRIDGE_KEEP_ALIVE_S="2",
    ) as child:
        yield child


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def exchange(port: int, pieces: list[bytes], *, pause: float = 0.0) -> bytes:
    """Send `pieces` (one write each) on a fresh connection, then read the whole answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            for piece in pieces:
                sock.sendall(piece)
                if pause:
                    time.sleep(pause)
        except OSError:
            pass  # the server answered and stopped reading: read what it said
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except OSError:
            pass
        return answer


def test_http_client_sending_a_whole_oversize_body_reads_the_413(
    receiver: tuple[subprocess.Popen[bytes], str],
) -> None:
    port = port_of(receiver[1])

    def chunks() -> Iterator[bytes]:
        for _ in range(40):  # 2.6 MB, chunked, over a 1 MiB limit
            yield b"1," * 32768

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    conn.request(
        "POST",
        "/webhooks/generic",
        body=chunks(),
        headers={"Content-Type": "application/json"},
        encode_chunked=True,
    )
    resp = conn.getresponse()  # before the drain: BrokenPipeError while still sending
    assert resp.status == 413
    assert b"body_too_large" in resp.read()
    conn.close()

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    conn.request("POST", "/webhooks/generic", body=b"1," * 1_300_000)  # with Content-Length
    resp = conn.getresponse()
    assert resp.status == 413
    conn.close()


def test_head_limits_hold_whatever_the_packet_boundaries(
    receiver: tuple[subprocess.Popen[bytes], str],
) -> None:
    port = port_of(receiver[1])
    tail = b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
        len(GENERIC),
        GENERIC,
    )
    heads = {
        "100 KB query": (
            b"POST /webhooks/generic?q=" + b"a" * 100_000 + b" HTTP/1.1\r\nHost: x\r\n" + tail,
            b"HTTP/1.1 414 ",
        ),
        "100 KB header": (
            b"POST /webhooks/generic HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100_000 + b"\r\n"
            b"" + tail,
            b"HTTP/1.1 431 ",
        ),
        "5,000 headers": (
            b"POST /webhooks/generic HTTP/1.1\r\nHost: x\r\n"
            + b"".join(b"X-H%d: 1\r\n" % i for i in range(5000))
            + tail,
            b"HTTP/1.1 431 ",
        ),
    }
    for name, (request, status) in heads.items():
        one_write = exchange(port, [request])
        assert one_write.startswith(status), (name, one_write[:100])
        pieces = [request[i : i + 1000] for i in range(0, len(request), 1000)]
        many_writes = exchange(port, pieces)
        assert many_writes.startswith(status), (name, many_writes[:100])
    assert httpx.post(f"{receiver[1]}/webhooks/generic", content=GENERIC).status_code == 202


def test_slow_header_clients_time_out_and_others_are_served_meanwhile(
    receiver: tuple[subprocess.Popen[bytes], str],
) -> None:
    proc, url = receiver
    port = port_of(url)
    head = b"POST /webhooks/generic HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    before = rss_bytes(proc.pid)

    def slow_client() -> bytes:
        """Send the head a byte at a time, 10 bytes a second, and return the answer."""
        with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            answer = b""
            sock.settimeout(0.1)
            for i in range(len(head)):
                try:
                    sock.sendall(head[i : i + 1])
                    answer += sock.recv(4096)
                except TimeoutError:
                    continue
                except OSError:
                    break
                if answer:
                    break
            sock.settimeout(15)
            try:
                while chunk := sock.recv(4096):
                    answer += chunk
            except OSError:
                pass
            return answer

    with ThreadPoolExecutor(max_workers=200) as pool:
        slow = [pool.submit(slow_client) for _ in range(200)]
        time.sleep(1.0)  # every slow client holds its connection, mid-head
        assert not any(f.done() for f in slow)
        with httpx.Client(base_url=url, timeout=10) as client:
            started = time.monotonic()
            resp = client.post("/webhooks/generic", content=GENERIC)
            elapsed = time.monotonic() - started
        assert resp.status_code == 202
        assert elapsed < 1.0, f"a normal client waited {elapsed:.2f} s behind 200 slow ones"
        held = rss_bytes(proc.pid)
        print(f"202 in {elapsed * 1000:.0f} ms; RSS {before / 2**20:.0f} -> {held / 2**20:.0f} MiB")
        assert held - before < 32 * 2**20
        answers = [f.result() for f in slow]
    assert all(a.startswith(b"HTTP/1.1 408 ") for a in answers), {a[:40] for a in answers}


def test_idle_connections_are_closed(receiver: tuple[subprocess.Popen[bytes], str]) -> None:
    url = receiver[1]
    port = port_of(url)
    fresh = [socket.create_connection(("127.0.0.1", port), timeout=15) for _ in range(50)]
    used = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    used.request("POST", "/webhooks/generic", body=GENERIC)
    assert used.getresponse().read()
    try:
        # A connection that never sends a byte is closed at the head deadline; one idle after
        # a response at the keep-alive timeout. recv() returns b"" when the server closed.
        for sock in fresh:
            assert sock.recv(1) == b""
        assert used.sock is not None
        assert used.sock.recv(1) == b""
    finally:
        for sock in fresh:
            sock.close()
        used.close()


def test_orphan_metadata_and_temp_files_are_swept_at_start(tmp_path: Path) -> None:
    root = tmp_path / "landing"
    store = LocalStore(root)
    kept = new_key("oura", datetime.now(UTC))
    store.put(kept, GENERIC, _meta())
    folder = root / kept.rpartition("/")[0]
    old_orphan = folder / ("20200101T000000000000Z-0000000000000000.json" + META_SUFFIX)
    new_orphan = folder / ("20200101T000000000000Z-1111111111111111.json" + META_SUFFIX)
    old_tmp = folder / ".x.json.abc.tmp"
    for f in (old_orphan, new_orphan, old_tmp):
        f.write_bytes(b'{"partial')
    day_ago = time.time() - 86400
    for f in (old_orphan, old_tmp):
        os.utime(f, (day_ago, day_ago))

    with receiver_child(
        BIOBRIDGE_LANDING_URL=root.as_uri(), BIOBRIDGE_DATA_DIR=str(tmp_path / "data")
    ) as (_, url):
        assert httpx.get(f"{url}/healthz").status_code == 200

    assert not old_orphan.exists() and not old_tmp.exists()
    assert new_orphan.exists()  # may belong to a write in flight: only old ones go
    assert store.get(kept)[0] == GENERIC
    assert list(store.list_keys("raw/")) == [kept]


def _meta() -> ObjectMeta:
    return ObjectMeta(
        received_at=datetime.now(UTC),
        vendor="oura",
        content_type="application/json",
        sha256=hashlib.sha256(GENERIC).hexdigest(),
        size=len(GENERIC),
        delivery_id="test-only",
        delivery_id_source="receiver",
        signature_verified=False,
    )


def test_pipelined_requests_are_all_answered(
    receiver: tuple[subprocess.Popen[bytes], str],
) -> None:
    post = b"POST /webhooks/generic HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (
        len(GENERIC),
        GENERIC,
    )
    last = b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    answer = exchange(port_of(receiver[1]), [post * 3 + last])
    assert answer.count(b"HTTP/1.1 202 ") == 3
    assert answer.count(b"HTTP/1.1 200 ") == 1


def test_expect_100_continue_is_answered_before_the_body_is_sent(
    receiver: tuple[subprocess.Popen[bytes], str],
) -> None:
    """The response head is held until the body's first bytes (one send per response), but the
    interim `100 Continue` is not: a client waiting for it before sending its body is served."""
    head = (
        b"POST /webhooks/generic HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n" % len(GENERIC)
    )
    with socket.create_connection(("127.0.0.1", port_of(receiver[1])), timeout=15) as sock:
        sock.sendall(head)
        interim = sock.recv(65536)
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(GENERIC)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    status, _, rest = answer.partition(b"\r\n")
    assert status == b"HTTP/1.1 202 Accepted"
    headers, _, body = rest.partition(b"\r\n\r\n")
    assert b'"status":"accepted"' in body
    assert int(headers.lower().split(b"content-length: ")[1].split(b"\r\n")[0]) == len(body)


def test_a_head_request_on_a_kept_alive_connection_gets_its_answer(
    receiver: tuple[subprocess.Popen[bytes], str],
) -> None:
    """A HEAD response has no body write to carry a held head: it is answered at once, also
    when pipelined behind another HEAD, without waiting for the connection to close."""
    with socket.create_connection(("127.0.0.1", port_of(receiver[1])), timeout=10) as sock:
        sock.sendall(b"HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n" * 2)
        answer = b""
        while answer.count(b"HTTP/1.1 200 ") < 2:
            chunk = sock.recv(65536)
            assert chunk, answer
            answer += chunk
        assert answer.endswith(b"\r\n\r\n")  # heads only, and the connection stays open
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        rest = b""
        while chunk := sock.recv(65536):
            rest += chunk
        assert rest.startswith(b"HTTP/1.1 200 "), rest
