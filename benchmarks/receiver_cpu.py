"""The receiver worker's CPU per request, in process: no sockets, no load generator.

    uv run python benchmarks/receiver_cpu.py [--requests 20000] [--connections 32] [--profile]

The receiver's edge protocol (`landing.serving.uvicorn_config`: httptools, edge limits) and its
app (local store with group commit, in a temporary folder; its syncer and materializer are the
usual child processes) are driven on a uvloop loop over fake transports: each round every
connection gets one Oura POST (the body of benchmarks/receiver.py) in one `data_received`, and
the round ends when every connection has its 202. It prints this process's user and system CPU
per request (the helpers' CPU is theirs, not counted) and the garbage collections per 1000
requests, and with `--profile` the top of a cProfile run (which slows everything ~3x).

What it measures is the Python work of a request (HTTP parsing callbacks, the ASGI cycle, the
handler, the log append): on this shared 2-core machine `benchmarks/receiver.py`'s per-request
CPU moves by +-30 % between runs with other load, this by about +-15 %; compare alternating
runs. It does not measure the socket syscalls (read, send, epoll: ~20 % of a worker's CPU under
wrk) nor the materializer and syncer: `benchmarks/receiver.py` reports those.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import resource
import tempfile
from pathlib import Path
from typing import Any

import uvloop
from uvicorn.server import ServerState

from landing.receiver import create_app
from landing.serving import uvicorn_config
from landing.settings import Settings
from landing.store import open_store

BODY = (
    b'{"event_type":"daily_readiness","user_id":"athlete_0324","timestamp":"2025-07-10T06:41:48Z",'
    b'"data":{"readiness_score":92,"hrv_balance":75,"body_temperature":0.94,'
    b'"resting_heart_rate":54,"respiratory_rate":14.0,"sleep_score":47,"activity_balance":38}}'
)
REQUEST = (
    b"POST /webhooks/oura HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nContent-Type: application/json\r\n"
    b"Content-Length: %d\r\n\r\n%s" % (len(BODY), BODY)
)
WARM_UP_ROUNDS = 50


class FakeTransport:
    """What the protocol writes to; counts the round's 202s."""

    def __init__(self, round_: Round) -> None:
        self.round = round_
        self.closing = False

    def write(self, data: bytes) -> None:
        if b"HTTP/1.1 202 " in data:
            self.round.answered()
        elif data.startswith(b"HTTP/1.1 "):
            raise RuntimeError(f"not accepted: {data[:200]!r}")

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8080), "peername": ("127.0.0.1", 50000)}.get(
            name, default
        )

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        pass


class Round:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.pending = 0
        self.done: asyncio.Future[None] = loop.create_future()

    def start(self, n: int) -> asyncio.Future[None]:
        self.pending, self.done = n, self.loop.create_future()
        return self.done

    def answered(self) -> None:
        self.pending -= 1
        if self.pending == 0:
            self.done.set_result(None)


async def run(requests: int, connections: int, profile: bool) -> None:
    with tempfile.TemporaryDirectory(prefix="receiver-cpu-") as folder:
        settings = Settings(landing_url=Path(folder).as_uri(), host="127.0.0.1", port=8080)
        app = create_app(settings, open_store(settings.landing_location(), settings))
        # The app's lifespan: at its end the worker's log is published and retired.
        async with app.router.lifespan_context(app):
            await measure(app, settings, requests, connections, profile)


async def measure(
    app: Any, settings: Settings, requests: int, connections: int, profile: bool
) -> None:
    config = uvicorn_config(app, settings)
    config.load()
    state = ServerState()
    loop = asyncio.get_running_loop()
    round_ = Round(loop)
    protocols = []
    for _ in range(connections):
        protocol = config.http_protocol_class(  # type: ignore[call-arg]
            config=config, server_state=state, app_state={}, _loop=loop
        )
        protocol.connection_made(FakeTransport(round_))  # type: ignore[arg-type]
        protocols.append(protocol)

    async def one_round() -> None:
        done = round_.start(len(protocols))
        for protocol in protocols:
            protocol.data_received(REQUEST)
        await done
        await asyncio.sleep(0)  # let the cycles finish (on_response_complete)

    for _ in range(WARM_UP_ROUNDS):
        await one_round()
    rounds = max(1, requests // connections)
    before_gc = [s["collections"] for s in gc.get_stats()]
    profiler = None
    if profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    before = resource.getrusage(resource.RUSAGE_SELF)
    for _ in range(rounds):
        await one_round()
    after = resource.getrusage(resource.RUSAGE_SELF)
    if profiler is not None:
        import pstats

        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(30)
    n = rounds * connections
    user = (after.ru_utime - before.ru_utime) / n * 1e6
    system = (after.ru_stime - before.ru_stime) / n * 1e6
    collections = [
        round((s["collections"] - b) / n * 1000, 1)
        for s, b in zip(gc.get_stats(), before_gc, strict=True)
    ]
    print(
        f"{n} requests, {connections} connections: worker CPU {user + system:.1f} us/req "
        f"(user {user:.1f}, system {system:.1f}); GC collections per 1000 requests by "
        f"generation {collections}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--profile", action="store_true", help="print a cProfile top 30")
    args = parser.parse_args()
    uvloop.run(run(args.requests, args.connections, args.profile))


if __name__ == "__main__":
    main()
