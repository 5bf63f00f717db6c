"""An HTTP proxy in front of the S3 test endpoint that fails requests on purpose.

Per request it either passes through or injects one fault, drawn from a seeded random schedule
at a given rate:

- `500`: `InternalError`, as S3 answers when it has a bad moment (nothing reaches the endpoint);
- `503`: `SlowDown` throttling with its S3 XML error body (nothing reaches the endpoint);
- `drop`: the request reaches the endpoint (a PUT is stored), then the connection is closed
  after a random part of the response (inside the headers or the body);
- `reset`: the connection is closed before the request is forwarded.

`stop()` takes the endpoint away entirely (connections refused) until `start()`.
Only 127.0.0.1: the proxy listens there and forwards to the endpoint's host and port.
"""

from __future__ import annotations

import http.client
import random
import socket
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from urllib.parse import urlsplit

FAULTS = ("500", "503", "drop", "reset")
_HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "expect"}
)
_ERROR_XML = (
    '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{message}'
    "</Message><RequestId>fault-proxy</RequestId></Error>"
)


class S3FaultProxy:
    """`with S3FaultProxy(endpoint, rate=0.3, seed=1) as proxy:` then use `proxy.url`."""

    def __init__(
        self,
        upstream: str,
        *,
        rate: float = 0.0,
        seed: int = 0,
        faults: tuple[str, ...] = FAULTS,
        methods: tuple[str, ...] = ("GET", "PUT", "HEAD", "DELETE", "POST"),
    ) -> None:
        parts = urlsplit(upstream)
        if parts.hostname != "127.0.0.1" or parts.port is None:
            raise ValueError(f"the upstream must be http://127.0.0.1:<port>, found {upstream}")
        self.upstream = (parts.hostname, parts.port)
        self.rate = rate
        self.faults = faults
        self.methods = methods
        self.injected: Counter[str] = Counter()
        self.requests: Counter[str] = Counter()
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port = int(probe.getsockname()[1])
        probe.close()
        self.url = f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> S3FaultProxy:
        self.start()
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.stop()

    def start(self) -> None:
        """Listen (again) on the same port."""
        server = ThreadingHTTPServer(("127.0.0.1", self.port), _handler(self))
        server.daemon_threads = True
        self._server = server
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}).start()

    def stop(self) -> None:
        """Stop listening: the endpoint is gone (connections refused)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def draw(self, method: str) -> tuple[str, float]:
        """The fate of one request, 'pass' or one of `faults`, and where a drop cuts (0-1)."""
        with self._lock:
            self.requests[method] += 1
            if method not in self.methods or self._random.random() >= self.rate:
                return "pass", 1.0
            fault = self._random.choice(self.faults)
            self.injected[f"{method} {fault}"] += 1
            return fault, self._random.random()


def _handler(proxy: S3FaultProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, and `Expect: 100-continue` as botocore uses

        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            self._handle()

        do_PUT = do_HEAD = do_DELETE = do_POST = do_GET

        def _handle(self) -> None:
            body = self._read_body()
            fate, cut = proxy.draw(self.command)
            if fate == "reset":
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            if fate in ("500", "503"):
                code, message = (
                    ("InternalError", "We encountered an internal error. Please try again.")
                    if fate == "500"
                    else ("SlowDown", "Please reduce your request rate.")
                )
                self._send_raw(self._error(int(fate), code, message))
                return
            raw = self._forward(body)
            if fate == "drop":
                self.close_connection = True
                self.wfile.write(raw[: max(1, min(len(raw) - 1, int(len(raw) * cut)))])
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            self._send_raw(raw)

        def _read_body(self) -> bytes:
            if self.headers.get("transfer-encoding", "").lower() == "chunked":
                chunks = []
                while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(chunks)
            return self.rfile.read(int(self.headers.get("content-length") or 0))

        def _forward(self, body: bytes) -> bytes:
            """The endpoint's whole response to this request, as raw HTTP/1.1 bytes."""
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
            if body or self.command in ("PUT", "POST"):
                headers["Content-Length"] = str(len(body))
            conn = http.client.HTTPConnection(*proxy.upstream, timeout=30)
            try:
                conn.request(self.command, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                payload = resp.read()
                kept = [(k, v) for k, v in resp.getheaders() if k.lower() not in _HOP_BY_HOP]
                status = resp.status
                reason = resp.reason
            finally:
                conn.close()
            kept = [(k, v) for k, v in kept if k.lower() != "content-length"]
            length = resp.getheader("content-length") if self.command == "HEAD" else None
            kept.append(("Content-Length", length or str(len(payload))))
            head = f"HTTP/1.1 {status} {reason}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in kept)
            return head.encode("latin-1") + b"\r\n" + (b"" if self.command == "HEAD" else payload)

        def _error(self, status: int, code: str, message: str) -> bytes:
            xml = _ERROR_XML.format(code=code, message=message).encode()
            reason = "Internal Server Error" if status == 500 else "Slow Down"
            head = (
                f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/xml\r\n"
                f"Content-Length: {len(xml)}\r\nx-amz-request-id: fault-proxy\r\n\r\n"
            )
            return head.encode() + (b"" if self.command == "HEAD" else xml)

        def _send_raw(self, raw: bytes) -> None:
            self.wfile.write(raw)
            self.wfile.flush()

    return Handler
