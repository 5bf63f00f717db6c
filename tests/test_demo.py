"""`biobridge demo` end to end: the pushes land as before, and the pointer vendors'
notifications are resolved against the fake vendor API the demo starts and become rows."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from deployments.cli import main
from deployments.fake_vendor_api import EXAMPLES
from tests.pipeline import Pipeline

# The documents the examples' notifications resolve to (deployments/examples/*.json): Oura's
# readiness event also fetches the user's heart rate; a WHOOP recovery brings its cycle and sleep.
RESOLVED = {
    "oura": ("oura_daily_readiness", "oura_heartrate"),
    "whoop": ("whoop_recovery", "whoop_cycle", "whoop_sleep"),
    "fitbit": ("fitbit_heart_rate_summary", "fitbit_hrv", "fitbit_temp_skin"),
    "withings": ("withings_measures",),
    "polar": ("polar_exercise",),
}
FETCHED_ROWS = (
    "SELECT d.vendor, d.resource, count(*) FROM public.biometric_events AS e "
    "JOIN biobridge.fetched_documents AS d ON d.object_key = e.source_key GROUP BY 1, 2"
)


def expected_rows(vendor: str) -> int:
    return sum(
        len(json.loads((EXAMPLES / f"{name}.expected.json").read_text())["rows"])
        for name in RESOLVED[vendor]
    )


def test_demo_turns_pointer_notifications_into_rows(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("BIOBRIDGE_TOKEN_ENCRYPTION_KEY", raising=False)
    status = main(["demo"])
    out = capsys.readouterr().out
    assert status == 0, out
    assert "throwaway key" in out and "reconnect after the demo" in out

    by_resource = pipeline.query(FETCHED_ROWS)
    got: Counter[str] = Counter()
    for vendor, _, n in by_resource:
        got[vendor] += n
    assert dict(got) == {v: expected_rows(v) for v in RESOLVED}, by_resource
    for vendor in RESOLVED:  # the printed table has the fetched vendors' rows too
        assert f"\n{vendor:<14}" in out
    states = dict(pipeline.query("SELECT state, count(*) FROM biobridge.notifications GROUP BY 1"))
    assert states == {"fetched": len(RESOLVED)}, states
    # The pushes still land: Garmin and Apple Health rows as before.
    pushed = dict(
        pipeline.query("SELECT device_type, count(*) FROM public.biometric_events GROUP BY 1")
    )
    assert pushed.get("garmin", 0) > 0 and pushed.get("apple_health", 0) > 0
