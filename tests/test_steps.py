"""The ingest flow's tasks: every one is declared with the one retry policy of the settings."""

from __future__ import annotations

from dataclasses import fields

import pytest
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


def test_a_bare_step_retries_transient_failures_only_as_the_policy_says(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The same policy without Prefect: a StoreUnavailable is retried (up to `retries`), a
    permanent error is raised at once; each retry is logged with the step's name."""
    from concurrent.futures import ThreadPoolExecutor

    from landing.store import StoreUnavailable
    from tasks.run_context import bare_run
    from tasks.steps import RetryPolicy

    calls: list[str] = []

    def flaky(*, fail: int, error: type[Exception]) -> str:
        calls.append("call")
        if len(calls) <= fail:
            raise error("S3 throttled")
        return "done"

    policy = RetryPolicy(retries=2, backoff_s=0.01)
    assert policy.delays() == exponential_backoff(backoff_factor=0.01)(2)
    with ThreadPoolExecutor(max_workers=1) as pool, bare_run():
        step = policy.bare(flaky, name="flaky-step", pool=pool)
        with caplog.at_level("WARNING", logger="biobridge.run"):
            assert step(fail=2, error=StoreUnavailable) == "done" and len(calls) == 3
        retried = [r for r in caplog.records if r.name == "biobridge.run.flaky-step"]
        assert [r.getMessage().split(";")[1].split(" in ")[0] for r in retried] == [
            " retry 1/2",
            " retry 2/2",
        ]
        calls.clear()
        with pytest.raises(StoreUnavailable):
            step(fail=3, error=StoreUnavailable)  # the retries are spent
        assert len(calls) == 3
        calls.clear()
        with pytest.raises(ValueError, match="S3 throttled"):
            step.submit(fail=1, error=ValueError).result()  # permanent: not retried
        assert len(calls) == 1


def test_the_bare_steps_are_the_declared_tasks() -> None:
    """One declaration, two runners: the same functions under the same names."""
    from tasks.steps import STEPS, bare_steps

    declared = ingest_tasks(PipelineSettings())
    with bare_steps(PipelineSettings(), threads=1) as bare:
        for f in fields(IngestTasks):
            task, step = getattr(declared, f.name), getattr(bare, f.name)
            assert task.fn is step.fn is STEPS[f.name][0], f.name
            assert task.name == step.name == STEPS[f.name][1], f.name
