"""Automations: installed idempotently on a real Prefect API; the ingest flow emits their events,
and an emitted quarantine event makes the quarantine automation fire."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from deployments.automations import declared_automations, install_automations
from flows.alerts import BACKLOG_STALE, QUARANTINE_RATE, SUCCEEDED, VENDOR_DELIVERED
from tasks.settings import PipelineSettings
from tests.pipeline import Pipeline
from tests.test_ingest import generic_body, land_raw


def events_named(names: list[str], since: datetime) -> list[Any]:
    from prefect.client.orchestration import get_client
    from prefect.events.filters import EventFilter, EventNameFilter, EventOccurredFilter

    with get_client(sync_client=True) as client:
        page = client.read_events(
            EventFilter(
                occurred=EventOccurredFilter(since=since),  # type: ignore[arg-type]
                event=EventNameFilter(name=names),
            ),
            limit=50,
        )
    return list(page.events)


def wait_for_events(names: list[str], since: datetime, *, count: int) -> list[Any]:
    """Events reach the API asynchronously (a websocket): poll until `count` arrived, or give up."""
    found: list[Any] = []
    for _ in range(120):
        found = events_named(names, since)
        if len(found) >= count:
            break
        time.sleep(0.5)
    return found


def test_install_is_idempotent(pipeline: Pipeline) -> None:
    from prefect.client.orchestration import get_client

    settings = PipelineSettings(alert_no_ingest_s=600)
    first = install_automations(settings)
    again = install_automations(settings)
    names = [a.name for a in declared_automations(settings)]
    assert len(names) == 4 and [n for n, _ in again] == names
    assert {what for _, what in again} == {"updated"}
    assert {what for _, what in first} <= {"created", "updated"}
    with get_client(sync_client=True) as client:
        for name in names:
            installed = client.read_automations_by_name(name)
            assert len(installed) == 1, name
        (no_ingest,) = client.read_automations_by_name("biobridge: no successful ingest")
    assert no_ingest.trigger.within == timedelta(seconds=600)  # type: ignore[union-attr]
    assert no_ingest.trigger.expect == {SUCCEEDED}  # type: ignore[union-attr]


def test_ingest_emits_events_and_quarantine_automation_fires(pipeline: Pipeline) -> None:
    install_automations(PipelineSettings())
    since = datetime.now(UTC)  # same clock as the server; earlier tests emitted before this
    assert pipeline.post("oura", generic_body("u_alert")).status_code == 202
    land_raw(pipeline, "whoop", b"\x00\x01 not json")
    land_raw(pipeline, "whoop", b"\x00\x02 not json")
    assert pipeline.ingest().is_completed()  # 2 of 3 files quarantined: over the 20 % default

    names = [SUCCEEDED, QUARANTINE_RATE, VENDOR_DELIVERED]
    emitted = wait_for_events(names, since, count=4)
    by_name = sorted((e.event, e.resource.id) for e in emitted)
    assert (SUCCEEDED, "biobridge.pipeline") in by_name
    assert (QUARANTINE_RATE, "biobridge.pipeline") in by_name
    assert (VENDOR_DELIVERED, "biobridge.vendor.oura") in by_name
    assert (VENDOR_DELIVERED, "biobridge.vendor.whoop") in by_name
    rate = next(e for e in emitted if e.event == QUARANTINE_RATE)
    assert rate.payload["rate"] == 2 / 3

    fired = wait_for_events(["prefect.automation.triggered"], since, count=1)
    assert any(
        "quarantine rate" in (e.resource.get("prefect.resource.name") or "") for e in fired
    ), [e.resource for e in fired]


def test_cli_installs_on_the_server_in_use_or_says_there_is_none(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from prefect.settings import PREFECT_API_URL

    from deployments.cli import main

    api = PREFECT_API_URL.value()
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    assert main(["automations", "install"]) != 0
    assert "no Prefect server to install into" in capsys.readouterr().err
    monkeypatch.setenv("PREFECT_API_URL", api)
    assert main(["automations", "install"]) == 0
    out = capsys.readouterr().out
    assert out.count("biobridge: ") == 4 and "vendor stopped sending" in out


def test_old_backlog_emits_the_stale_event_and_its_automation_fires(pipeline: Pipeline) -> None:
    from tests.test_verify import land_at
    from warehouse.ledger import record_discovered
    from warehouse.postgres import connect

    install_automations(PipelineSettings())
    since = datetime.now(UTC)  # same clock as the server; earlier tests emitted before this
    old = land_at(pipeline, "whoop", generic_body("u_late"), datetime.now(UTC) - timedelta(hours=2))
    with connect(pipeline.db_url) as conn:
        assert record_discovered(conn, [old]) == 1
    assert pipeline.post("oura", generic_body("u_on_time")).status_code == 202
    assert pipeline.ingest(vendors=["oura"]).is_completed()  # the whoop file stays pending

    (stale,) = wait_for_events([BACKLOG_STALE], since, count=1)
    assert stale.payload["pending"] == 1 and stale.payload["oldest_age_s"] > 7000
    assert events_named([QUARANTINE_RATE], since) == []  # nothing was quarantined
    fired = wait_for_events(["prefect.automation.triggered"], since, count=1)
    assert any("backlog" in (e.resource.get("prefect.resource.name") or "") for e in fired)


def fired_automations(since: datetime, name_part: str, *, count: int = 1) -> list[Any]:
    """`prefect.automation.triggered` events of the automation whose name has `name_part`."""
    found: list[Any] = []
    for _ in range(120):  # proactive triggers are evaluated every 5 s
        found = [
            e
            for e in events_named(["prefect.automation.triggered"], since)
            if name_part in (e.resource.get("prefect.resource.name") or "")
        ]
        if len(found) >= count:
            break
        time.sleep(0.5)
    return found


def test_silence_automations_fire_when_nothing_arrives(pipeline: Pipeline) -> None:
    """The proactive automations fire on an absence: no successful ingest for N seconds, and a
    vendor that delivered, then nothing (thresholds shortened to Prefect's 10 s minimum)."""
    install_automations(PipelineSettings(alert_no_ingest_s=10, alert_vendor_silence_s=10))
    since = datetime.now(UTC)
    assert pipeline.post("whoop", generic_body("u_silent")).status_code == 202
    assert pipeline.ingest(vendors=["whoop"]).is_completed()  # whoop delivered once, then silence
    (delivered,) = wait_for_events([VENDOR_DELIVERED], since, count=1)
    assert delivered.resource.id == "biobridge.vendor.whoop"

    silent = fired_automations(since, "vendor stopped sending")
    assert silent, "the vendor-silence automation did not fire within 60 s"
    assert silent[0].occurred >= delivered.occurred + timedelta(seconds=10)
    assert "biobridge.vendor.whoop" in str(silent[0].payload), silent[0].payload

    idle = fired_automations(since, "no successful ingest")
    assert idle, "the no-ingest automation did not fire within 60 s"
    install_automations(PipelineSettings())  # back to the defaults for the other tests
