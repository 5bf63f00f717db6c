"""Receiver throughput and latency against a no-op ASGI app, both served by uvicorn.

    uv run python benchmarks/receiver.py [--requests 3000] [--concurrency 32] [--client raw]

Each target runs in its own process (`--serve receiver|noop`) so the load generator (this process)
does not share its interpreter. The receiver lands into a local store in a temporary folder with
its fsyncs; the no-op app reads the body and answers 202. Both get the generic example body.
`--client httpx` (default) uses one httpx AsyncClient per connection; httpx costs ~1-2 ms of CPU per
request, so on a small machine it can be the bottleneck: `--client raw` sends the same request over
plain asyncio streams to see what the servers can do.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
BODY = (ROOT / "deployments" / "examples" / "generic_daily_readiness.json").read_bytes()


async def noop_app(scope, receive, send) -> None:
    """Read the whole body, answer 202 with a small JSON body: the floor for any receiver."""
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


def serve(target: str, port: int, folder: str) -> None:
    """Run one target in this process until killed."""
    import uvicorn

    if target == "noop":
        uvicorn.run(noop_app, host="127.0.0.1", port=port, access_log=False, log_level="warning")
        return
    from landing.server import serve as serve_receiver
    from landing.settings import Settings

    serve_receiver(Settings(landing_url=Path(folder).as_uri(), host="127.0.0.1", port=port))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class HttpxPoster:
    """One keep-alive connection through httpx."""

    def __init__(self, url: str, verify: ssl.SSLContext) -> None:
        limits = httpx.Limits(max_connections=1)
        self.client = httpx.AsyncClient(base_url=url, verify=verify, limits=limits)

    async def post(self) -> int:
        return (await self.client.post("/webhooks/generic", content=BODY)).status_code

    async def close(self) -> None:
        await self.client.aclose()


class RawPoster:
    """One keep-alive connection speaking just enough HTTP/1.1 (Content-Length answers)."""

    REQUEST = (
        b"POST /webhooks/generic HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(BODY), BODY)
    )

    def __init__(self, url: str, verify: ssl.SSLContext) -> None:
        self.port = int(url.rsplit(":", 1)[1])
        self.streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def post(self) -> int:
        if self.streams is None:
            self.streams = await asyncio.open_connection("127.0.0.1", self.port)
        reader, writer = self.streams
        writer.write(self.REQUEST)
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            int(line.split(b":", 1)[1])
            for line in head.lower().split(b"\r\n")
            if line.startswith(b"content-length:")
        )
        await reader.readexactly(length)
        return int(head.split(b" ", 2)[1])

    async def close(self) -> None:
        if self.streams is not None:
            self.streams[1].close()


async def load(url: str, requests: int, concurrency: int, client: str) -> tuple[float, list[float]]:
    """POST `requests` bodies over `concurrency` keep-alive connections; (seconds, latencies)."""
    verify = ssl.create_default_context()
    kind = HttpxPoster if client == "httpx" else RawPoster
    posters = [kind(url, verify) for _ in range(concurrency)]
    latencies: list[float] = []
    remaining = iter(range(requests))

    async def worker(poster: HttpxPoster | RawPoster) -> None:
        for _ in remaining:
            started = time.perf_counter()
            status = await poster.post()
            latencies.append(time.perf_counter() - started)
            if status != 202:
                raise RuntimeError(f"{url} answered {status}")

    try:
        await asyncio.gather(*(p.post() for p in posters))  # connect and warm up
        started = time.perf_counter()
        await asyncio.gather(*(worker(p) for p in posters))
        return time.perf_counter() - started, latencies
    finally:
        for p in posters:
            await p.close()


def measure(target: str, requests: int, concurrency: int, client: str) -> dict[str, float]:
    port = free_port()
    with tempfile.TemporaryDirectory() as folder:
        cmd = [sys.executable, __file__, "--serve", target, "--port", str(port), "--dir", folder]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        proc = subprocess.Popen(cmd, env=env, stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 30
            while True:
                try:
                    httpx.get(f"{url}/healthz", timeout=1)
                    break
                except httpx.TransportError:
                    if time.monotonic() > deadline or proc.poll() is not None:
                        raise RuntimeError(f"{target} did not start") from None
                    time.sleep(0.05)
            seconds, latencies = asyncio.run(load(url, requests, concurrency, client))
            landed = sum(1 for p in Path(folder).rglob("*.json") if "meta" not in p.name)
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    cuts = statistics.quantiles(latencies, n=100)
    return {
        "req_s": len(latencies) / seconds,
        "p50_ms": cuts[49] * 1000,
        "p99_ms": cuts[98] * 1000,
        "landed": landed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--client", choices=["httpx", "raw"], default="httpx")
    parser.add_argument("--serve", choices=["receiver", "noop"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port, args.dir)
        return

    print(
        f"{args.requests} POSTs of {len(BODY)} bytes, {args.concurrency} concurrent "
        f"{args.client} clients, {os.cpu_count()} CPUs"
    )
    results = {
        t: measure(t, args.requests, args.concurrency, args.client) for t in ("noop", "receiver")
    }
    for target, r in results.items():
        print(
            f"{target:>8}: {r['req_s']:7.0f} req/s  p50 {r['p50_ms']:6.1f} ms  "
            f"p99 {r['p99_ms']:6.1f} ms"
            + (f"  ({r['landed']:.0f} objects landed)" if target == "receiver" else "")
        )
    ratio = results["receiver"]["req_s"] / results["noop"]["req_s"]
    print(f"receiver / noop throughput: {ratio:.2f}")


if __name__ == "__main__":
    main()
