"""The ingest flow's tasks: every one is declared with the one retry policy of the settings."""

from __future__ import annotations

from dataclasses import fields

from prefect.tasks import exponential_backoff

from tasks.retry import retry_if_transient
from tasks.settings import PipelineSettings
from tasks.steps import IngestTasks, ingest_tasks


def test_every_task_carries_the_retry_policy_of_the_settings() -> None:
    settings = PipelineSettings(io_retries=7, retry_backoff_s=0.5)
    declared = ingest_tasks(settings)
    delays = exponential_backoff(backoff_factor=0.5)(7)
    for f in fields(IngestTasks):
        task = getattr(declared, f.name)
        assert task.retries == 7, f.name
        assert task.retry_delay_seconds == delays, f.name
        assert task.retry_condition_fn is retry_if_transient, f.name


def test_a_changed_setting_changes_the_next_declaration() -> None:
    first = ingest_tasks(PipelineSettings(io_retries=1)).load_batch
    second = ingest_tasks(PipelineSettings(io_retries=3)).load_batch
    assert (first.retries, second.retries) == (1, 3)
    assert first.name == second.name == "load-batch"
