"""Browser check of what ops see: start the stack, post webhooks (some bad), wait for the run,
open the Prefect UI in headless Chromium, check the rendered pages and save screenshots.

    uv run python -m deployments.browser_check --out /tmp/screens

Needs Debian's `chromium`. Uses a fresh data dir (embedded Postgres) and free ports; stops
the stack with SIGINT (as a terminal's Ctrl-C) at the end. Exit 0 when every check passed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from deployments.demo import demo_requests

BLANK_PNG_BYTES = 55_000  # the bare sidebar, measured: ~41 kB; a rendered page: > 70 kB
BAD_POSTS: list[tuple[str, bytes]] = [
    # a JSON body of no known shape: the report must show "<body>" literally
    ("oura", b'{"surprise": "not a payload we know"}'),
    # a readiness score of 250 and a negative heart rate: outside the physical bounds
    (
        "apple_health",
        json.dumps(
            {
                "user_id": "bad_bounds",
                "device_type": "apple_health",
                "timestamp": "2026-11-01T08:00:00Z",
                "data": {"readiness_score": 250, "heart_rate_bpm": -5},
            }
        ).encode(),
    ),
    # a value that is not a number, and a key the catalogue does not know (schema drift)
    (
        "oura",
        json.dumps(
            {
                "user_id": "bad_value",
                "device_type": "oura",
                "timestamp": "2026-11-01T08:00:00Z",
                "data": {"sleep_score": "great", "new_vendor_metric": 3},
            }
        ).encode(),
    ),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if found := shutil.which(name):
            return found
    raise SystemExit("browser check: no chromium found (apt-get install -y chromium)")


def browse(url: str, *, png: Path | None, size: str = "1400,900") -> str:
    """Render `url` headless; save a screenshot to `png` (if given); return the DOM text."""
    with tempfile.TemporaryDirectory() as profile:
        args = [
            chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--no-first-run", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", f"--user-data-dir={profile}", f"--window-size={size}",
            "--virtual-time-budget=30000", "--hide-scrollbars",
        ]  # fmt: skip
        for _ in range(3 if png is not None else 0):
            subprocess.run(  # noqa: S603 - fixed argv
                [*args, f"--screenshot={png}", url], capture_output=True, check=False, timeout=120
            )
            if png is not None and png.exists() and png.stat().st_size > BLANK_PNG_BYTES:
                break  # a page still loading renders as the bare sidebar: take it again
        dom = subprocess.run(  # noqa: S603 - fixed argv
            [*args, "--dump-dom", url], capture_output=True, text=True, check=False, timeout=120
        )
    return dom.stdout


def run_artifacts(api: str, run_id: str, key: str) -> list[dict[str, Any]]:
    """The artifacts with `key` that the flow run `run_id` published."""
    found: list[dict[str, Any]] = httpx.post(
        f"{api}/artifacts/filter",
        json={"artifacts": {"key": {"any_": [key]}, "flow_run_id": {"any_": [run_id]}}},
        timeout=10,
    ).json()
    return found


def wait_for(path: Path, proc: subprocess.Popen[bytes], timeout_s: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("browser check: `biobridge up` did not come up")
        time.sleep(0.5)
    info: dict[str, Any] = json.loads(path.read_text())
    return info


def main(argv: list[str] | None = None) -> int:
    """Run the check; print each result; 0 when all passed."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("screens"), help="folder for the PNGs")
    args = parser.parse_args(argv)
    out: Path = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="biobridge-browser-"))
    os.chmod(work, 0o755)  # noqa: S103 - the embedded Postgres user must traverse it when root
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BIOBRIDGE_", "PREFECT_"))}
    env |= {
        "BIOBRIDGE_DATA_DIR": str(work / "data"),
        "BIOBRIDGE_PORT": str(free_port()),
        "BIOBRIDGE_INGEST_INTERVAL_S": "3600",
    }
    cli = [sys.executable, "-m", "deployments.cli"]
    results: list[tuple[str, bool]] = []
    up = subprocess.Popen(  # noqa: S603 - our CLI
        [*cli, "up", "--prefect-port", str(free_port())],
        env=env,
        stdout=(work / "up.log").open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        info = wait_for(work / "data" / "stack.json", up, 240)
        ui, api = info["ui_url"], info["api_url"]
        print(f"stack up: {ui} (log {work / 'up.log'})")
        with httpx.Client(base_url=info["receiver_url"], timeout=30) as client:
            for route, body, headers in demo_requests():
                client.post(f"/webhooks/{route}", content=body, headers=headers)
            for route, body in BAD_POSTS:
                headers = {"content-type": "application/json"}
                if route == "apple_health":
                    headers["x-user-id"] = "bad_bounds"
                client.post(f"/webhooks/{route}", content=body, headers=headers)
        ingest = subprocess.run(  # noqa: S603 - our CLI
            [*cli, "ingest"], env=env, capture_output=True, text=True, check=False, timeout=300
        )
        print(ingest.stdout.strip())
        run_id = ingest.stdout.split("/runs/flow-run/")[1].split()[0]
        run = httpx.get(f"{api}/flow_runs/{run_id}", timeout=10).json()
        results.append(
            (
                "run ended 'Completed with warnings'",
                run["state"]["name"] == "Completed with warnings",
            )
        )
        results.append(("run tagged 'warnings'", "warnings" in run["tags"]))
        arts = run_artifacts(api, run_id, "ingest-reasons")
        trends = run_artifacts(api, run_id, "ingest-trends")
        note = arts[0]["data"] if arts else ""
        results.append(("run published its trends", bool(trends) and "rows/h" in trends[0]["data"]))
        results.append(("report names vendor and file", "**oura**" in note and "raw/oura/" in note))
        results.append(("report keeps <body> visible", "&lt;body&gt;" in note))
        deployment = httpx.get(f"{api}/deployments/name/{info['deployment']}", timeout=10).json()

        pages = {
            "1-deployment": f"{ui}/deployments/deployment/{deployment['id']}",
            "2-flow-run": f"{ui}/runs/flow-run/{run_id}",
            "3-report": f"{ui}/artifacts/artifact/{arts[0]['id']}" if arts else None,
            "4-runs": f"{ui}/runs",
            "5-dashboard": f"{ui}/dashboard",
            "6-trends": f"{ui}/artifacts/artifact/{trends[0]['id']}" if trends else None,
        }
        doms: dict[str, str] = {}
        for name, url in pages.items():
            if url is None:
                continue
            doms[name] = browse(url, png=out / f"{name}.png", size="1400,1100")
            print(f"screenshot {out / f'{name}.png'} <- {url}")
        results.append(
            ("UI shows the deployment", "landed-webhooks" in doms.get("1-deployment", ""))
        )
        results.append(
            ("UI shows the warning state", "Completed with warnings" in doms.get("2-flow-run", ""))
        )
        report_dom = doms.get("3-report", "")
        results.append(("UI report shows <body>", "&lt;body&gt;" in report_dom))
        results.append(("UI report names a file", "raw/oura/" in report_dom))
        results.append(("UI shows the trend sparklines", "lag p95" in doms.get("6-trends", "")))
    finally:
        if up.poll() is None:
            os.killpg(up.pid, signal.SIGINT)
            try:
                up.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(up.pid, signal.SIGKILL)
    for what, ok in results:
        print(f"{'ok  ' if ok else 'FAIL'} {what}")
    return 0 if results and all(ok for _, ok in results) else 1


if __name__ == "__main__":
    sys.exit(main())
