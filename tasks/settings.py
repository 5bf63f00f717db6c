"""The pipeline's settings: the store part it shares with the receiver, plus its own fields.

Only the pipeline processes (flows, the CLI's ops commands, `biobridge up`'s runner) read these;
the receiver reads `landing.settings.Settings` and never sees the database URL.
"""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field, SecretStr

from landing.settings import Settings
from tasks.discover import SWEEP_KEYS


class PipelineSettings(Settings):
    """`Settings` (store, ack deadline) plus the database and the ingest's own knobs."""

    database_url: SecretStr | None = Field(
        default=None,
        description="postgresql://... for the pipeline; unset: an embedded Postgres in data_dir.",
    )
    embedded_db_host: str = Field(
        default="127.0.0.1",
        description="Address the embedded Postgres takes TCP connections on; empty: socket only.",
    )
    embedded_db_port: int = Field(
        default=0,
        ge=0,
        le=65535,
        description="TCP port of the embedded Postgres; 0: a free port chosen once, then kept.",
    )
    ingest_interval_s: int = Field(
        default=60, ge=5, description="Seconds between scheduled ingest runs (`biobridge up`)."
    )
    io_retries: int = Field(
        default=4, ge=0, le=20, description="Retries of a pipeline step after a transient failure."
    )
    retry_backoff_s: float = Field(
        default=2.0, gt=0, description="First retry delay; doubles each retry, with jitter."
    )
    code_version: str | None = Field(
        default=None,
        description="What load records name as the code that wrote them; unset: version+git sha.",
    )
    health_max_pending_age_s: int = Field(
        default=900, gt=0, description="`biobridge health` fails when a file waits longer."
    )
    discovery_sweep_keys: int = Field(
        default=SWEEP_KEYS,
        ge=1,
        description="Keys per vendor each scheduled run sweeps (finds skewed receivers' objects).",
    )
    token_encryption_key: SecretStr | None = Field(
        default=None,
        description="Fernet key encrypting stored vendor OAuth tokens (`biobridge connect`).",
    )
    fetch_batch: int = Field(
        default=50, ge=1, le=5000, description="Notifications the fetch stage claims at once."
    )
    alert_quarantine_rate: float = Field(
        default=0.2,
        ge=0,
        le=1,
        description="A run whose share of quarantined files exceeds this emits the alert event.",
    )
    # At least 10 s: Prefect refuses a shorter window on a proactive trigger.
    alert_no_ingest_s: int = Field(
        default=1800, ge=10, description="Automation: no successful ingest for this long fires."
    )
    alert_vendor_silence_s: int = Field(
        default=21600, ge=10, description="Automation: a vendor that sent, silent this long."
    )


PIPELINE_ONLY_ENV: tuple[str, ...] = tuple(
    f"BIOBRIDGE_{name.upper()}"
    for name in PipelineSettings.model_fields.keys() - Settings.model_fields.keys()
)
"""Variables only the pipeline reads: `biobridge up` keeps them out of the receiver's env."""


@lru_cache(maxsize=1)
def get_pipeline_settings() -> PipelineSettings:
    """Pipeline settings read from the environment once per process."""
    return PipelineSettings()
