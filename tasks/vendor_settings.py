"""Where each pointer vendor's OAuth and data APIs live, and how we authenticate to them.

The URLs default to the real vendors (deployments/examples/OAUTH.md) and are overridable by
settings, so tests and `biobridge demo` point them at the fake vendor API. The client secret is
the one the receiver checks webhook signatures with (same `BIOBRIDGE_<VENDOR>_CLIENT_SECRET`).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from typing import Any

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

POINTER_VENDORS = ("oura", "whoop", "fitbit", "withings", "polar")


class ClientAuth(StrEnum):
    """How the client authenticates at the token endpoint."""

    BODY = "body"  # client_id and client_secret as form fields
    BASIC = "basic"  # Authorization: Basic base64(client_id:client_secret)


@dataclass(frozen=True)
class RateLimit:
    """A documented limit: `requests` per `per_s` seconds, per `scope` ("app" or "user")."""

    requests: int
    per_s: int
    scope: str


@dataclass(frozen=True)
class VendorFacts:
    """What does not change per deployment: each vendor's documented OAuth behaviour."""

    client_auth: ClientAuth
    pkce: bool  # send an S256 code_challenge with the authorize URL
    scopes: tuple[str, ...]
    scope_separator: str
    refreshable: bool  # Polar issues long-lived tokens without a refresh token
    refresh_scope: str | None  # WHOOP wants scope=offline on a refresh
    state_length: int | None  # WHOOP requires an 8-character state
    grant_action: str | None  # Withings: action=requesttoken on every token call
    status_in_body: bool  # Withings: HTTP 200 with a non-zero body `status` on errors
    rate_limits: tuple[RateLimit, ...]  # enforced across workers by tasks/fetch/limiter.py


FACTS: dict[str, VendorFacts] = {
    "oura": VendorFacts(
        client_auth=ClientAuth.BODY,
        pkce=False,
        scopes=("daily", "heartrate", "spo2", "workout", "session", "personal"),
        scope_separator=" ",
        refreshable=True,
        refresh_scope=None,
        state_length=None,
        grant_action=None,
        status_in_body=False,
        rate_limits=(RateLimit(5000, 300, "user"),),  # third-party figure; Oura sends Retry-After
    ),
    "whoop": VendorFacts(
        client_auth=ClientAuth.BODY,
        pkce=False,
        scopes=(
            "offline",
            "read:recovery",
            "read:cycles",
            "read:sleep",
            "read:workout",
            "read:profile",
        ),
        scope_separator=" ",
        refreshable=True,
        refresh_scope="offline",
        state_length=8,
        grant_action=None,
        status_in_body=False,
        rate_limits=(RateLimit(100, 60, "app"), RateLimit(10_000, 86_400, "app")),
    ),
    "fitbit": VendorFacts(
        client_auth=ClientAuth.BASIC,
        pkce=True,
        scopes=("activity", "heartrate", "sleep", "temperature", "weight", "profile"),
        scope_separator=" ",
        refreshable=True,
        refresh_scope=None,
        state_length=None,
        grant_action=None,
        status_in_body=False,
        rate_limits=(RateLimit(150, 3600, "user"),),  # resets at the top of the hour
    ),
    "withings": VendorFacts(
        client_auth=ClientAuth.BODY,
        pkce=False,
        scopes=("user.info", "user.metrics", "user.activity", "user.sleepevents"),
        scope_separator=",",
        refreshable=True,
        refresh_scope=None,
        state_length=None,
        grant_action="requesttoken",  # Withings names its token calls by action
        status_in_body=True,
        rate_limits=(RateLimit(120, 60, "app"),),
    ),
    "polar": VendorFacts(
        client_auth=ClientAuth.BASIC,
        pkce=False,
        scopes=("accesslink.read_all",),
        scope_separator=" ",
        refreshable=False,
        refresh_scope=None,
        state_length=None,
        grant_action=None,
        status_in_body=False,
        rate_limits=(
            RateLimit(500, 900, "app"),
            RateLimit(5000, 86_400, "app"),
        ),  # + 20/100 per user
    ),
}


@dataclass(frozen=True)
class VendorApi:
    """One vendor's resolved endpoints and credentials (the secret stays a `SecretStr`)."""

    vendor: str
    api_url: str
    token_url: str
    authorize_url: str
    client_id: str | None
    client_secret: SecretStr | None
    facts: VendorFacts


def _url(default: str, vendor: str, what: str) -> Any:
    return Field(default=default, description=f"{vendor} {what}; point it at a fake in tests.")


class VendorApiSettings(BaseSettings):
    """Vendor API endpoints and OAuth clients, from `BIOBRIDGE_<VENDOR>_<FIELD>`."""

    model_config = SettingsConfigDict(env_prefix="BIOBRIDGE_", extra="ignore")

    oura_api_url: str = _url("https://api.ouraring.com", "Oura", "API base URL")
    oura_token_url: str = _url("https://api.ouraring.com/oauth/token", "Oura", "token URL")
    oura_authorize_url: str = _url(
        "https://cloud.ouraring.com/oauth/authorize", "Oura", "authorize URL"
    )
    oura_client_id: str | None = None
    oura_client_secret: SecretStr | None = None

    whoop_api_url: str = _url("https://api.prod.whoop.com/developer", "WHOOP", "API base URL")
    whoop_token_url: str = _url(
        "https://api.prod.whoop.com/oauth/oauth2/token", "WHOOP", "token URL"
    )
    whoop_authorize_url: str = _url(
        "https://api.prod.whoop.com/oauth/oauth2/auth", "WHOOP", "authorize URL"
    )
    whoop_client_id: str | None = None
    whoop_client_secret: SecretStr | None = None

    fitbit_api_url: str = _url("https://api.fitbit.com", "Fitbit", "API base URL")
    fitbit_token_url: str = _url("https://api.fitbit.com/oauth2/token", "Fitbit", "token URL")
    fitbit_authorize_url: str = _url(
        "https://www.fitbit.com/oauth2/authorize", "Fitbit", "authorize URL"
    )
    fitbit_client_id: str | None = None
    fitbit_client_secret: SecretStr | None = None
    fitbit_accept_language: str = Field(
        default="en_GB",
        description="Accept-Language sent to Fitbit: en_US answers imperial units, others metric.",
    )

    withings_api_url: str = _url("https://wbsapi.withings.net", "Withings", "API base URL")
    withings_token_url: str = _url("https://wbsapi.withings.net/v2/oauth2", "Withings", "token URL")
    withings_authorize_url: str = _url(
        "https://account.withings.com/oauth2_user/authorize2", "Withings", "authorize URL"
    )
    withings_client_id: str | None = None
    withings_client_secret: SecretStr | None = None

    polar_api_url: str = _url("https://www.polaraccesslink.com/v3", "Polar", "API base URL")
    polar_token_url: str = _url("https://polarremote.com/v2/oauth2/token", "Polar", "token URL")
    polar_authorize_url: str = _url(
        "https://flow.polar.com/oauth2/authorization", "Polar", "authorize URL"
    )
    polar_client_id: str | None = None
    polar_client_secret: SecretStr | None = None

    vendor_timeout_s: float = Field(
        default=30.0, gt=0, description="Seconds to wait for a vendor API to answer one request."
    )

    def api(self, vendor: str) -> VendorApi:
        """The resolved endpoints and client of `vendor` (one of `POINTER_VENDORS`)."""
        if vendor not in FACTS:
            raise ValueError(
                f"unknown pointer vendor {vendor!r}: expected one of {', '.join(POINTER_VENDORS)}"
            )
        values = self.model_dump()
        secret = values[f"{vendor}_client_secret"]
        return VendorApi(
            vendor=vendor,
            api_url=str(values[f"{vendor}_api_url"]).rstrip("/"),
            token_url=str(values[f"{vendor}_token_url"]),
            authorize_url=str(values[f"{vendor}_authorize_url"]),
            client_id=values[f"{vendor}_client_id"],
            client_secret=secret if isinstance(secret, SecretStr) else None,
            facts=FACTS[vendor],
        )


@lru_cache(maxsize=1)
def get_vendor_api_settings() -> VendorApiSettings:
    """Vendor API settings read from the environment once per process."""
    return VendorApiSettings()
