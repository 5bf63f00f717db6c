"""The alerting automations, declared here and installed by `biobridge automations install`.

Each watches an event the ingest flow emits (`flows/alerts.py`); installing is idempotent (an
automation with the same name is updated, not duplicated). Their action is `DoNothing`: a fired
automation shows in the UI's event feed and Automations page; attach a notification block to
it there (Slack, e-mail, ...) to be told.
"""

from __future__ import annotations

from datetime import timedelta

from prefect.events.actions import DoNothing
from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture

from flows.alerts import BACKLOG_STALE, PIPELINE, QUARANTINE_RATE, SUCCEEDED, VENDOR_DELIVERED
from tasks.settings import PipelineSettings

TAG = "biobridge"


def declared_automations(settings: PipelineSettings) -> list[AutomationCore]:
    """The four automations, with thresholds from `settings`."""
    no_ingest = timedelta(seconds=settings.alert_no_ingest_s)
    silence = timedelta(seconds=settings.alert_vendor_silence_s)
    pipeline: dict[str, str | list[str]] = {"prefect.resource.id": PIPELINE}
    return [
        AutomationCore(
            name="biobridge: no successful ingest",
            description=f"No ingest run completed for {no_ingest} (BIOBRIDGE_ALERT_NO_INGEST_S).",
            tags=[TAG],
            trigger=EventTrigger(
                match=pipeline,
                expect={SUCCEEDED},
                posture=Posture.Proactive,
                threshold=1,
                within=no_ingest,
            ),
            actions=[DoNothing()],
        ),
        AutomationCore(
            name="biobridge: quarantine rate over threshold",
            description="A run quarantined more than BIOBRIDGE_ALERT_QUARANTINE_RATE "
            f"({settings.alert_quarantine_rate:.0%}) of its files.",
            tags=[TAG],
            trigger=EventTrigger(
                match=pipeline, expect={QUARANTINE_RATE}, posture=Posture.Reactive, threshold=1
            ),
            actions=[DoNothing()],
        ),
        AutomationCore(
            name="biobridge: backlog too old",
            description="The oldest pending file waited longer than "
            f"BIOBRIDGE_HEALTH_MAX_PENDING_AGE_S ({settings.health_max_pending_age_s} s).",
            tags=[TAG],
            trigger=EventTrigger(
                match=pipeline, expect={BACKLOG_STALE}, posture=Posture.Reactive, threshold=1
            ),
            actions=[DoNothing()],
        ),
        AutomationCore(
            name="biobridge: vendor stopped sending",
            description=f"A vendor that delivered sent nothing for {silence} "
            "(BIOBRIDGE_ALERT_VENDOR_SILENCE_S); one alert per vendor.",
            tags=[TAG],
            trigger=EventTrigger(
                match={"prefect.resource.id": "biobridge.vendor.*"},
                after={VENDOR_DELIVERED},
                expect={VENDOR_DELIVERED},
                for_each={"prefect.resource.id"},
                posture=Posture.Proactive,
                threshold=1,
                within=silence,
            ),
            actions=[DoNothing()],
        ),
    ]


def install_automations(settings: PipelineSettings) -> list[tuple[str, str]]:
    """Create or update each declared automation; returns (name, "created" | "updated")."""
    from prefect.client.orchestration import get_client

    done: list[tuple[str, str]] = []
    with get_client(sync_client=True) as client:
        for automation in declared_automations(settings):
            existing = client.read_automations_by_name(automation.name)
            if existing:
                client.update_automation(existing[0].id, automation)
                for extra in existing[1:]:  # an older install's duplicates
                    client.delete_automation(extra.id)
                done.append((automation.name, "updated"))
            else:
                client.create_automation(automation)
                done.append((automation.name, "created"))
    return done
