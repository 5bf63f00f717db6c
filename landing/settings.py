"""The receiver's and the object store's settings, read from the environment once at an entry point.

The pipeline reads these too (it opens the same store) plus its own fields:
`tasks.settings.PipelineSettings`. The receiver never sees the database URL.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

MiB = 1024 * 1024


class Settings(BaseSettings):
    """Receiver and store configuration. Every field is read from `BIOBRIDGE_<FIELD>` (README).

    Secrets are `SecretStr`: they never appear in a repr, a log line or an error message.
    """

    model_config = SettingsConfigDict(env_prefix="BIOBRIDGE_", extra="ignore")

    data_dir: Path = Field(
        default=Path(".biobridge"),
        description="Folder for the local store, the embedded Postgres and Prefect's home.",
    )
    landing_url: str | None = Field(
        default=None,
        description="file:///abs/path or s3://bucket/prefix; unset: <data_dir>/landing.",
    )
    max_body_bytes: int = Field(default=16 * MiB, gt=0, description="Largest webhook body.")
    host: str = Field(default="127.0.0.1", description="Receiver bind address.")
    port: int = Field(default=8000, ge=0, le=65535, description="Receiver port.")
    s3_connect_timeout_s: float = Field(
        default=5.0, gt=0, description="Seconds to wait for a TCP connection to S3."
    )
    s3_read_timeout_s: float = Field(
        default=30.0, gt=0, description="Seconds to wait for S3 to answer one request."
    )
    s3_max_attempts: int = Field(
        default=5, ge=1, description="S3 attempts per call (adaptive retries), first included."
    )
    s3_max_pool_connections: int = Field(
        default=40, ge=1, description="HTTP connections kept to S3 (one per concurrent put)."
    )
    body_timeout_s: float = Field(
        default=30.0, gt=0, description="Deadline for reading a whole webhook body (else 408)."
    )
    retry_after_s: int = Field(
        default=30, ge=1, description="Retry-After seconds sent with a 503 (store unavailable)."
    )
    probe_timeout_s: float = Field(
        default=10.0, gt=0, description="Deadline for the store probe behind /readyz."
    )
    ack_deadline_s: float = Field(
        default=300.0,
        gt=0,
        description=(
            "A write that finishes later than this after receipt is answered 503, not 202, so "
            "discovery (which re-lists twice this window) can never miss an acknowledged body."
        ),
    )

    # The vendor edge (docs/vendors/<vendor>.md): a route with its credential unset is open.
    oura_client_secret: SecretStr | None = Field(
        default=None, description="Oura OAuth client secret: checks x-oura-signature."
    )
    oura_verification_token: SecretStr | None = Field(
        default=None, description="Token Oura echoes in its subscription challenge GET."
    )
    oura_accept_compact_json_signature: bool = Field(
        default=False,
        description=(
            "Also accept an Oura signature over the body re-serialised as compact JSON "
            "(Oura's sample signs JSON.stringify(parsed)); recorded as such in the metadata."
        ),
    )
    whoop_client_secret: SecretStr | None = Field(
        default=None, description="WHOOP client secret: checks X-WHOOP-Signature."
    )
    fitbit_client_secret: SecretStr | None = Field(
        default=None, description="Fitbit client secret: checks X-Fitbit-Signature."
    )
    fitbit_verification_code: SecretStr | None = Field(
        default=None, description="Code Fitbit sends as ?verify= when adding a subscriber."
    )
    polar_signature_secret: SecretStr | None = Field(
        default=None, description="Polar signature_secret_key: checks Polar-Webhook-Signature."
    )
    garmin_client_id: str | None = Field(
        default=None, description="Our Garmin consumer key: the garmin-client-id header must match."
    )
    signature_max_age_s: int = Field(
        default=300,
        gt=0,
        description="Replay window of timestamped signatures (Oura, WHOOP), past and future.",
    )
    generic_token: SecretStr | None = Field(
        default=None,
        description="Bearer token the old internal system must send with the generic shape.",
    )
    token_secret: SecretStr | None = Field(
        default=None,
        description="Server key of user tokens (`biobridge tokens issue`): Apple Health pushes.",
    )
    token_revocation_refresh_s: float = Field(
        default=30.0,
        gt=0,
        description="The receiver re-reads revoked tokens this often: the revocation delay.",
    )
    open_routes: str = Field(
        default="",
        description=(
            "Comma-separated routes allowed to accept unauthenticated posts on a non-loopback "
            "bind (oura, whoop, garmin, fitbit, withings, polar, apple_health, generic)."
        ),
    )

    group_commit: bool = Field(
        default=True,
        description="Local store: log concurrent webhooks together (one fdatasync per group) and "
        "answer once logged; a materializer process turns the log into objects.",
    )
    ack_visible: bool = Field(
        default=False,
        description="Local store: answer 202 only once the body is an object (listed and "
        "readable), not as soon as it is durable in the log. Slower; for tests and tools that "
        "read right after posting.",
    )
    log_max_backlog_bytes: int = Field(
        default=1024 * MiB,
        gt=0,
        description="Local store: body bytes logged but not yet objects, per worker, beyond "
        "which webhooks get 503 (as when the oldest is older than half the ack deadline).",
    )

    workers: int = Field(
        default=1, ge=1, le=64, description="Receiver worker processes (forked, one socket)."
    )
    max_connections: int = Field(
        default=1000,
        ge=1,
        description="Connections served per worker; more get 503 + Retry-After (capped below "
        "the open-files limit).",
    )
    max_requests_in_flight: int = Field(
        default=256, ge=1, description="Requests handled at once per worker; more get 503."
    )
    max_buffered_body_bytes: int = Field(
        default=256 * MiB,
        gt=0,
        description="Request body bytes held in memory at once per worker; beyond: 503.",
    )
    head_timeout_s: float = Field(
        default=10.0, gt=0, description="Deadline for a request's line and headers (else 408)."
    )
    keep_alive_s: float = Field(
        default=5.0, gt=0, description="Idle keep-alive connections are closed after this."
    )
    max_url_bytes: int = Field(
        default=8192, ge=256, description="Longest request target (path and query), else 414."
    )
    max_header_bytes: int = Field(
        default=32768, ge=1024, description="Most header bytes in one request, else 431."
    )
    max_headers: int = Field(default=100, ge=10, description="Most headers in one request.")
    backlog: int = Field(default=2048, ge=1, description="Listen backlog of the socket.")
    drain_max_bytes: int = Field(
        default=64 * MiB,
        ge=0,
        description="An oversize body is read and dropped up to this many bytes before the 413, "
        "so a client that sends it all before reading still reads the answer.",
    )

    def landing_location(self) -> str:
        """The landing store's URL, defaulting to a folder under `data_dir`."""
        if self.landing_url:
            return self.landing_url
        return (self.data_dir / "landing").resolve().as_uri()


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Settings read from the environment once per process."""
    return Settings()
