"""Shared helpers of the flatten tests: the examples, literal bodies and row comparison."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from tasks.flatten import (
    Flattened,
    FlattenInput,
    flatten_many,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "deployments" / "examples"
FLATTENED_VENDORS = {"generic", "garmin", "apple_health"}


def expected_files() -> list[Path]:
    files = sorted(EXAMPLES.glob("*.expected.json"))
    return [f for f in files if json.loads(f.read_text())["vendor"] in FLATTENED_VENDORS]


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def _key(row: dict[str, Any]) -> tuple[Any, ...]:
    stamp = row["timestamp"]
    instant = _instant(stamp) if isinstance(stamp, str) else stamp
    return (row["user_id"], row["device_type"], row["metric_type"], row["unit"], instant)


def assert_same_rows(actual: pl.DataFrame, expected: list[dict[str, Any]]) -> None:
    """Rows compared as a multiset: keys exactly, values with 1e-6 relative tolerance."""
    got = sorted(((_key(r), r["value"]) for r in actual.iter_rows(named=True)), key=repr)
    want = sorted(((_key(r), float(r["value"])) for r in expected), key=repr)
    assert [k for k, _ in got] == [k for k, _ in want]
    for (key, value), (_, wanted) in zip(got, want, strict=True):
        assert math.isclose(value, wanted, rel_tol=1e-6), (key, value, wanted)


def one(
    vendor: str, resource: str, payload: Any, context: dict[str, Any] | None = None
) -> Flattened:
    return flatten_many([FlattenInput(0, vendor, resource, payload, context or {})])


EXAMPLE_RESOURCES: dict[tuple[str, str], str] = {
    ("oura", "webhook"): "notification",
    ("whoop", "webhook"): "notification",
    ("polar", "webhook"): "notification",
    ("withings", "notify"): "notification",
}
"""The resource names the spec's examples use for pointer bodies -> the production names."""


def generic_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "event_type": "daily_readiness",
        "user_id": "athlete_1",
        "timestamp": "2025-07-28T19:28:15Z",
        "data": {"readiness_score": 92, "resting_heart_rate": 48, "sleep_score": 88},
    }
    body.update(overrides)
    return body


def metrics(rows: pl.DataFrame) -> dict[str, float]:
    return dict(zip(rows["metric_type"], rows["value"], strict=True))


def garmin_dailies(**overrides: Any) -> dict[str, Any]:
    summary: dict[str, Any] = {
        "userId": "g1",
        "summaryId": "s1",
        "calendarDate": "2025-07-27",
        "startTimeInSeconds": 1753599600,
        "startTimeOffsetInSeconds": -25200,
        "steps": 100,
        "restingHeartRateInBeatsPerMinute": 49,
        "averageHeartRateInBeatsPerMinute": 63,
        "timeOffsetHeartRateSamples": {"0": 58, "15": 59},
    }
    summary.update(overrides)
    return {"dailies": [summary]}
