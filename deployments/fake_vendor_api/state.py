"""What the fake vendor API knows: clients, tokens, codes, documents, faults and the request log."""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

VENDORS = ("oura", "whoop", "fitbit", "withings", "polar")
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
REDACTED = "<redacted>"
CREDENTIAL_FIELDS = frozenset(
    {
        "access_token",
        "refresh_token",
        "code",
        "client_secret",
        "code_verifier",
        "id_token",
        "verification_token",
    }
)

# Documented lifetimes (OAUTH.md): access token seconds, authorization code seconds.
ACCESS_LIFETIME_S = {
    "oura": 86400,
    "whoop": 3600,
    "fitbit": 28800,
    "withings": 10800,
    "polar": 31535999,
}
CODE_LIFETIME_S = {"oura": 600, "whoop": 600, "fitbit": 600, "withings": 30, "polar": 600}
OURA_SUBSCRIPTION_LIFETIME_S = 90 * 86400  # open-wearables' figure (unconfirmed by Oura)
FITBIT_REPLAY_WINDOW_S = 120.0  # identical refreshes within 2 min get the same answer
WITHINGS_OLD_REFRESH_GRACE_S = 8 * 3600.0  # until the new access token is first used

# Vendor-relative paths of the OAuth endpoints (the API base is the vendor prefix itself).
AUTHORIZE_PATHS = {
    "oura": "/oauth/authorize",
    "whoop": "/oauth/oauth2/auth",
    "fitbit": "/oauth2/authorize",
    "withings": "/oauth2_user/authorize2",
    "polar": "/oauth2/authorization",
}
TOKEN_PATHS = {
    "oura": "/oauth/token",
    "whoop": "/oauth/oauth2/token",
    "fitbit": "/oauth2/token",
    "withings": "/v2/oauth2",
    "polar": "/v2/oauth2/token",
}
API_PATHS = {"oura": "", "whoop": "/developer", "fitbit": "", "withings": "", "polar": "/v3"}
CLIENT_AUTH = {  # accepted at the token endpoint
    "oura": {"body", "basic"},
    "whoop": {"body"},
    "fitbit": {"basic"},
    "withings": {"body"},
    "polar": {"basic"},
}
DEFAULT_USERS = {
    "oura": "c2b7e5d0-31f4-4a8e-9d62-0b5f7a3e1c98",
    "whoop": "48213",
    "fitbit": "B7QK2M",
    "withings": "38164427",
    "polar": "90317",
}
FITBIT_LIST_KEYS = {
    "activities-heart": "activities-heart",
    "hrv": "hrv",
    "temp_skin": "tempSkin",
    "temp_core": "tempCore",
}


class FaultKind(StrEnum):
    """What the fake does instead of answering normally."""

    RATE_LIMIT = "rate_limit"  # 429 + Retry-After (Withings: HTTP 200, status 601)
    SERVER_ERROR = "server_error"  # 500
    TOKEN_EXPIRED = "token_expired"  # noqa: S105 - a fault name; the presented access token expires now: 401; refresh works
    GRANT_REVOKED = "grant_revoked"  # 401 and the user's refresh tokens die: invalid_grant
    NOT_FOUND = "not_found"  # 404
    SLOW = "slow"  # wait `delay_s`, then answer normally


@dataclass
class Fault:
    """Answer the next `times` requests of `vendor` whose path matches the glob `path` with `kind`.

    `path` is relative to the vendor prefix, e.g. `/v2/usercollection/*` or `/oauth/token`.
    """

    kind: FaultKind
    vendor: str | None = None
    path: str = "*"
    times: int = 1
    retry_after_s: int = 1
    delay_s: float = 0.0


@dataclass(frozen=True)
class RecordedRequest:
    """One request the fake received; credential values are redacted, tokens never kept."""

    vendor: str | None
    method: str
    path: str  # relative to the vendor prefix
    params: dict[str, str]  # query and form fields, credentials redacted
    has_bearer: bool
    has_basic: bool
    accept_language: str | None
    status: int
    fault: str | None


@dataclass
class Grant:
    vendor: str
    user_id: str
    scope: str
    revoked: bool = False


@dataclass
class Access:
    grant: Grant
    expires_at: float
    valid: bool = True
    used: bool = False


@dataclass
class Refresh:
    grant: Grant
    used_at: float | None = None
    answer: dict[str, Any] | None = None  # Fitbit replays it within the window
    successor: str | None = None  # the access token issued in exchange for this one


@dataclass
class Code:
    vendor: str
    user_id: str
    client_id: str
    redirect_uri: str
    scope: str
    challenge: str | None
    expires_at: float


@dataclass
class Doc:
    body: Any
    stamp: str  # for filtering and ordering (a date, date-time or epoch as text)


@dataclass
class FakeVendorState:
    """Everything the fake knows; shared by the server thread and the handle, under `lock`."""

    credentials: dict[str, tuple[str, str]]
    lock: threading.Lock = field(default_factory=threading.Lock)
    page_size: int = 50
    clock_offset_s: float = 0.0
    logins: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_USERS))
    docs: dict[tuple[str, str, str], dict[str, Doc]] = field(default_factory=dict)
    codes: dict[str, Code] = field(default_factory=dict)
    access: dict[str, Access] = field(default_factory=dict)
    refresh: dict[str, Refresh] = field(default_factory=dict)
    registered: set[tuple[str, str]] = field(default_factory=set)
    oura_subscriptions: dict[str, dict[str, Any]] = field(default_factory=dict)
    fitbit_subscriptions: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    utc_offsets_ms: dict[str, int] = field(default_factory=dict)  # Fitbit profile, per user
    verify_callbacks: bool = True  # Oura checks a callback (challenge) before subscribing it
    faults: list[Fault] = field(default_factory=list)
    requests: list[RecordedRequest] = field(default_factory=list)

    def now(self) -> float:
        return time.time() + self.clock_offset_s

    def add_document(
        self,
        vendor: str,
        resource: str,
        body: Any,
        *,
        user_id: str,
        key: str | None = None,
        accept_language: str | None = None,
    ) -> str:
        """Serve `body` as `resource` of `user_id`; returns the key it is found under."""
        key, stamp = key_and_stamp(vendor, resource, body, key)
        if vendor == "fitbit":
            key = f"{key}|{unit_system(accept_language)}"
        with self.lock:
            self.docs.setdefault((vendor, resource, str(user_id)), {})[key] = Doc(body, stamp)
        return key

    def issue(
        self, vendor: str, user_id: str, scope: str = "", *, expires_in: int | None = None
    ) -> dict[str, Any]:
        """A fresh token answer for `user_id` in `vendor`'s shape (call under `lock`)."""
        grant = Grant(vendor, str(user_id), scope)
        return self._answer(grant, expires_in)

    def _answer(self, grant: Grant, expires_in: int | None = None) -> dict[str, Any]:
        vendor = grant.vendor
        lifetime = ACCESS_LIFETIME_S[vendor] if expires_in is None else expires_in
        access = f"fake-{vendor}-access-{secrets.token_urlsafe(18)}"
        self.access[access] = Access(grant, self.now() + lifetime)
        answer: dict[str, Any] = {
            "access_token": access,
            "token_type": "Bearer" if vendor in ("fitbit", "withings") else "bearer",
            "expires_in": lifetime,
        }
        if vendor != "polar":
            refresh = f"fake-{vendor}-refresh-{secrets.token_urlsafe(18)}"
            self.refresh[refresh] = Refresh(grant)
            answer["refresh_token"] = refresh
            answer["scope"] = grant.scope
        if vendor == "fitbit":
            answer["user_id"] = grant.user_id
        if vendor == "withings":
            answer["userid"] = grant.user_id
            answer["csrf_token"] = secrets.token_hex(8)
        if vendor == "polar":
            answer["x_user_id"] = int(grant.user_id) if grant.user_id.isdigit() else grant.user_id
        return answer

    def expire(self, vendor: str, user_id: str | None = None, *, revoke: bool = False) -> None:
        """Expire the access tokens of `vendor` (one user or all); `revoke` kills the grants too."""
        with self.lock:
            for token in self.access.values():
                if token.grant.vendor == vendor and user_id in (None, token.grant.user_id):
                    token.valid = False
            if revoke:
                grants = [t.grant for t in self.access.values()]
                grants += [r.grant for r in self.refresh.values()]
                for grant in grants:
                    if grant.vendor == vendor and user_id in (None, grant.user_id):
                        grant.revoked = True


def key_and_stamp(vendor: str, resource: str, body: Any, key: str | None) -> tuple[str, str]:
    """Where a document is found (its id or date) and what orders and filters it."""
    b: Mapping[str, Any] = body if isinstance(body, dict) else {}
    if vendor == "oura":
        if resource == "heartrate":
            return key or str(b["timestamp"]), str(b["timestamp"])
        return key or str(b["id"]), str(b.get("day") or b.get("timestamp") or "")
    if vendor == "whoop":
        stamp = str(b.get("created_at") if resource == "recovery" else b.get("start"))
        return key or str(b["cycle_id"] if resource == "recovery" else b["id"]), stamp
    if vendor == "fitbit":
        entries = b.get(FITBIT_LIST_KEYS[resource]) or [{}]
        date = key or str(entries[0].get("dateTime", ""))[:10]
        return date, date
    if vendor == "withings":
        return key or str(b["grpid"]), str(b.get("date", 0))
    if vendor == "polar":
        if resource == "sleep":
            return key or str(b["date"]), str(b["date"])
        return key or str(b["id"]), str(b.get("start-time", ""))
    raise ValueError(f"unknown vendor {vendor!r}: expected one of {', '.join(VENDORS)}")


def unit_system(accept_language: str | None) -> str:
    """Fitbit answers imperial units to en_US and metric to anything else."""
    return "en_US" if (accept_language or "").replace("-", "_") == "en_US" else "metric"


def seed_examples(state: FakeVendorState, examples: Path = EXAMPLES) -> None:
    """Serve deployments/examples/ so the example notifications resolve to their documents."""

    def load(name: str) -> Any:
        return json.loads((examples / f"{name}.json").read_text())

    def user(name: str) -> str:
        context = load(f"{name}.expected")["context"] or {}
        return str(context["user_id"])

    for resource in ("daily_readiness", "daily_sleep", "daily_activity", "sleep", "daily_spo2"):
        state.add_document(
            "oura", resource, load(f"oura_{resource}"), user_id=user(f"oura_{resource}")
        )
    for item in load("oura_heartrate")["data"]:
        state.add_document("oura", "heartrate", item, user_id=user("oura_heartrate"))
    for resource in ("recovery", "sleep", "cycle", "workout"):
        body = load(f"whoop_{resource}")
        state.add_document("whoop", resource, body, user_id=str(body["user_id"]))
    for name, resource in (
        ("fitbit_heart_rate_summary", "activities-heart"),
        ("fitbit_hrv", "hrv"),
        ("fitbit_temp_skin", "temp_skin"),
    ):
        context = load(f"{name}.expected")["context"]
        state.add_document(
            "fitbit",
            resource,
            load(name),
            user_id=context["user_id"],
            accept_language=context.get("accept_language"),
        )
    for group in load("withings_measures")["body"]["measuregrps"]:
        state.add_document("withings", "measuregrp", group, user_id=user("withings_measures"))
    event = load("polar_exercise_event")
    state.add_document(
        "polar",
        "exercise",
        load("polar_exercise"),
        user_id=user("polar_exercise"),
        key=event["entity_id"],
    )
    state.add_document("polar", "sleep", load("polar_sleep"), user_id=user("polar_sleep"))
