"""The receiver's settings and the pipeline's: the database URL is the pipeline's alone."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from landing.settings import Settings
from tasks.settings import PIPELINE_ONLY_ENV, PipelineSettings


def test_the_receiver_settings_hold_no_database_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BIOBRIDGE_DATABASE_URL", "postgresql://u:test-only-secret@db/x")
    assert "database_url" not in Settings.model_fields
    assert "test-only-secret" not in repr(Settings().model_dump())
    pipeline = PipelineSettings()
    assert isinstance(pipeline.database_url, SecretStr)
    assert "test-only-secret" not in repr(pipeline)


def test_up_keeps_exactly_the_pipeline_variables_from_the_receiver() -> None:
    assert "BIOBRIDGE_DATABASE_URL" in PIPELINE_ONLY_ENV
    assert "BIOBRIDGE_IO_RETRIES" in PIPELINE_ONLY_ENV
    receiver = {f"BIOBRIDGE_{name.upper()}" for name in Settings.model_fields}
    assert receiver.isdisjoint(PIPELINE_ONLY_ENV)
    assert receiver | set(PIPELINE_ONLY_ENV) == {
        f"BIOBRIDGE_{name.upper()}" for name in PipelineSettings.model_fields
    }
