"""Micro-benchmark of the flatten stage alone: prints rows/s for a realistic batch.

20,000 generic-shape bodies (7 metrics each) plus 2,000 Garmin dailies with ~1,000 heart-rate
samples each, already parsed (the ingest flow parses with orjson before flattening).

    uv run python benchmarks/flatten.py [--generic N] [--garmin N] [--samples N]
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from tasks.flatten import FlattenInput, flatten_many

START = 1_753_599_600


def generic_body(n: int) -> dict[str, Any]:
    return {
        "event_type": "daily_readiness",
        "user_id": f"athlete_{n % 500:04d}",
        "timestamp": f"2025-07-{1 + n % 28:02d}T19:28:{n % 60:02d}Z",
        "data": {
            "readiness_score": 80 + n % 20,
            "hrv_balance": 75.5,
            "body_temperature": 36.4,
            "resting_heart_rate": 48 + n % 7,
            "respiratory_rate": 13.5,
            "sleep_score": 88,
            "activity_balance": 91,
        },
    }


def garmin_body(n: int, samples: int) -> dict[str, Any]:
    return {
        "dailies": [
            {
                "userId": f"7c1e5a9b3f2d4e6a8b0c1d2e3f4a{n:04d}",
                "summaryId": f"x2f9a1c4-{n}",
                "calendarDate": "2025-07-27",
                "startTimeInSeconds": START + 86_400 * (n % 30),
                "startTimeOffsetInSeconds": -25200,
                "steps": 12408,
                "restingHeartRateInBeatsPerMinute": 49,
                "timeOffsetHeartRateSamples": {
                    str(15 * i): 50 + (i * 7 + n) % 100 for i in range(samples)
                },
            }
        ]
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generic", type=int, default=20_000)
    parser.add_argument("--garmin", type=int, default=2_000)
    parser.add_argument("--samples", type=int, default=1_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    items = [
        FlattenInput(n, "oura", "generic", generic_body(n), {}) for n in range(args.generic)
    ] + [
        FlattenInput(args.generic + n, "garmin", "push", garmin_body(n, args.samples), {})
        for n in range(args.garmin)
    ]
    best = float("inf")
    for _ in range(args.repeat):
        started = time.perf_counter()
        result = flatten_many(items)
        best = min(best, time.perf_counter() - started)
    rows = result.rows.height
    print(
        f"flatten_many: {len(items):,} files -> {rows:,} rows, {len(result.issues)} issues, "
        f"best of {args.repeat}: {best:.3f} s = {rows / best:,.0f} rows/s"
    )


if __name__ == "__main__":
    main()
