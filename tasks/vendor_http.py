"""HTTP calls to the pointer vendors' OAuth and data APIs, with every failure classified once.

`VendorClient` builds authorize URLs, exchanges codes, refreshes tokens and GETs JSON; the
functions below it know each vendor's paths and pagination. Failures become typed errors the
fetch stage acts on: `RateLimited` (back off `retry_after_s`), `VendorTransient` (retry with
jitter), `Unauthorized` (refresh once), `NeedsReauthorization` (mark the connection), `NotFound`
(resolved to nothing) and `VendorRejected` (permanent). Tokens are `SecretStr` throughout; log
lines and error messages name the vendor, the path and the status only.
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import logging
import secrets
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urlsplit

from pydantic import SecretStr

from tasks.vendor_settings import ClientAuth, VendorApi

if TYPE_CHECKING:
    import httpx

log = logging.getLogger(__name__)

DEFAULT_RETRY_AFTER_S = 60.0
"""Back-off when a vendor rate-limits without saying for how long (all limits are per minute+)."""

# Withings answers HTTP 200 with these body statuses (python_withings_api's const.py).
_WITHINGS_AUTH_FAILED = frozenset({100, 101, 102, 200, 401, 2553, 2554, 2555})
_WITHINGS_RATE_LIMITED = frozenset({601})
_WITHINGS_TRANSIENT = frozenset({522, 524})
_WITHINGS_INVALID_PARAMS = frozenset({503})


class VendorHttpError(Exception):
    """A vendor call failed; the message names vendor, path and status, never a token."""

    def __init__(self, vendor: str, path: str, status: int | None, reason: str) -> None:
        shown = f"HTTP {status}" if status is not None else "no response"
        super().__init__(f"{vendor} {path}: {reason} ({shown})")
        self.vendor = vendor
        self.path = path
        self.status = status
        self.reason = reason


class VendorTransient(VendorHttpError):
    """5xx, a timeout or a lost connection: retry later with jitter."""


class RateLimited(VendorHttpError):
    """The vendor said slow down: wait `retry_after_s` before the next call."""

    def __init__(self, vendor: str, path: str, status: int | None, retry_after_s: float) -> None:
        super().__init__(vendor, path, status, f"rate limited, retry after {retry_after_s:g} s")
        self.retry_after_s = retry_after_s


class Unauthorized(VendorHttpError):
    """The access token was refused (expired or revoked): refresh once, then re-authorise."""


class NeedsReauthorization(VendorHttpError):
    """The grant is gone (invalid_grant, or a vendor without refresh): the user must reconnect."""


class NotFound(VendorHttpError):
    """The record the notification points at does not exist (any more)."""


class VendorRejected(VendorHttpError):
    """A permanent refusal (bad request, missing scope, bad client credentials)."""


class Conflict(VendorRejected):
    """409: it exists already (a Polar user registration, a subscription): often success."""


def is_transient(exc: BaseException) -> bool:
    """True when a later attempt may succeed (rate limit, 5xx, timeout, connection loss)."""
    return isinstance(exc, RateLimited | VendorTransient)


@dataclass(frozen=True)
class TokenSet:
    """Tokens from a code exchange or refresh; persist it before using the access token."""

    access_token: SecretStr
    refresh_token: SecretStr | None
    expires_at: datetime | None
    scope: str | None
    vendor_user_id: str | None

    def expires_within(self, seconds: float, *, now: datetime | None = None) -> bool:
        """True if the access token expires in less than `seconds` (refresh it first)."""
        if self.expires_at is None:
            return False
        return self.expires_at - (now or datetime.now(UTC)) < timedelta(seconds=seconds)


@dataclass(frozen=True)
class AuthorizationRequest:
    """Where to send the user, and what to keep until the callback arrives."""

    url: str
    state: str
    code_verifier: SecretStr | None


def _retry_after(response: httpx.Response) -> float:
    """Seconds from Retry-After (seconds or HTTP date), else a reset header, else the default."""
    value = response.headers.get("retry-after")
    if value:
        try:
            return max(0.0, float(value))
        except ValueError:
            try:
                parsed = email.utils.parsedate_to_datetime(value)
            except (TypeError, ValueError):
                parsed = None
            if parsed is not None:
                if parsed.tzinfo is None:
                    parsed = parsed.replace(tzinfo=UTC)
                return max(0.0, (parsed - datetime.now(UTC)).total_seconds())
    for header in ("fitbit-rate-limit-reset", "ratelimit-reset"):  # seconds until reset
        if (reset := response.headers.get(header)) and reset.isdigit():
            return float(reset)
    return DEFAULT_RETRY_AFTER_S


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _is_invalid_grant(body: Any) -> bool:
    """RFC 6749 `{"error": "invalid_grant"}` or Fitbit's `{"errors": [{"errorType": ...}]}`."""
    if not isinstance(body, dict):
        return False
    if body.get("error") == "invalid_grant":
        return True
    errors = body.get("errors")
    return isinstance(errors, list) and any(
        isinstance(e, dict) and e.get("errorType") == "invalid_grant" for e in errors
    )


class VendorClient:
    """One vendor's OAuth and data API over one pooled HTTP client (use as a context manager)."""

    def __init__(
        self,
        api: VendorApi,
        *,
        timeout_s: float = 30.0,
        before_send: Callable[[str], None] | None = None,
    ) -> None:
        self.api = api
        self.vendor = api.vendor
        # Imported when a client is made: every ingest imports this module, few call a vendor,
        # and httpx (with the rich/click of its CLI) costs ~0.3 s of a bare run's start.
        import httpx

        self._http = httpx.Client(timeout=httpx.Timeout(timeout_s), follow_redirects=False)
        # Called with the path before every request: the fetch stage's rate limiter waits there.
        self._before_send = before_send

    def __enter__(self) -> VendorClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the pooled connections."""
        self._http.close()

    def __repr__(self) -> str:
        return f"VendorClient(vendor={self.vendor!r}, api_url={self.api.api_url!r})"

    # OAuth

    def authorization_request(
        self, *, redirect_uri: str, state: str | None = None
    ) -> AuthorizationRequest:
        """The authorize URL to send the user to, with a fresh state (and PKCE where supported)."""
        facts = self.api.facts
        if state is None:
            # WHOOP insists on exactly 8 characters; everyone else gets 32.
            state = secrets.token_urlsafe(24)[: facts.state_length or 32]
        params = {
            "response_type": "code",
            "client_id": self._client_id(),
            "redirect_uri": redirect_uri,
            "scope": facts.scope_separator.join(facts.scopes),
            "state": state,
        }
        verifier: SecretStr | None = None
        if facts.pkce:
            raw = secrets.token_urlsafe(64)
            verifier = SecretStr(raw)
            digest = hashlib.sha256(raw.encode("ascii")).digest()
            params["code_challenge"] = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
            params["code_challenge_method"] = "S256"
        url = f"{self.api.authorize_url}?{urlencode(params)}"
        return AuthorizationRequest(url=url, state=state, code_verifier=verifier)

    def exchange_code(
        self, code: SecretStr, *, redirect_uri: str, code_verifier: SecretStr | None = None
    ) -> TokenSet:
        """Trade an authorization code for tokens; an expired or used code -> re-authorise."""
        form = {
            "grant_type": "authorization_code",
            "code": code.get_secret_value(),
            "redirect_uri": redirect_uri,
        }
        if code_verifier is not None:
            form["code_verifier"] = code_verifier.get_secret_value()
        return self._token_call(form)

    def refresh(self, refresh_token: SecretStr | None) -> TokenSet:
        """A new token set; the old refresh token is spent (rotation): store the new one first."""
        facts = self.api.facts
        if not facts.refreshable or refresh_token is None:
            raise NeedsReauthorization(
                self.vendor, self._path(self.api.token_url), None, "no refresh token to use"
            )
        form = {"grant_type": "refresh_token", "refresh_token": refresh_token.get_secret_value()}
        if facts.refresh_scope:
            form["scope"] = facts.refresh_scope
        return self._token_call(form)

    def _client_id(self) -> str:
        if not self.api.client_id:
            raise VendorRejected(
                self.vendor,
                self._path(self.api.authorize_url),
                None,
                f"client id not configured: set BIOBRIDGE_{self.vendor.upper()}_CLIENT_ID",
            )
        return self.api.client_id

    def _token_call(self, form: dict[str, str]) -> TokenSet:
        facts = self.api.facts
        path = self._path(self.api.token_url)
        if self.api.client_secret is None:
            raise VendorRejected(
                self.vendor,
                path,
                None,
                f"client secret not configured: set BIOBRIDGE_{self.vendor.upper()}_CLIENT_SECRET",
            )
        client_id = self._client_id()
        secret = self.api.client_secret.get_secret_value()
        auth: httpx.BasicAuth | None = None
        if facts.client_auth is ClientAuth.BASIC:
            import httpx

            auth = httpx.BasicAuth(client_id, secret)
        else:
            form = {**form, "client_id": client_id, "client_secret": secret}
        if facts.grant_action:
            form = {"action": facts.grant_action, **form}
        response = self._send("POST", self.api.token_url, data=form, auth=auth)
        body = _json(response)
        if response.status_code in (400, 401) and _is_invalid_grant(body):
            raise NeedsReauthorization(self.vendor, path, response.status_code, "invalid_grant")
        try:
            self._raise_for_status(response, path)
            if facts.status_in_body:
                status = body.get("status") if isinstance(body, dict) else None
                if status in _WITHINGS_INVALID_PARAMS:  # Withings' answer to a dead code/grant
                    raise NeedsReauthorization(
                        self.vendor, path, response.status_code, f"grant refused (status {status})"
                    )
                body = self._check_status_body(body, path, response.status_code)
        except Unauthorized as exc:  # at the token endpoint a 401 is about our client, not a user
            raise VendorRejected(
                self.vendor, path, exc.status, "client credentials refused"
            ) from None
        if not isinstance(body, dict) or not isinstance(body.get("access_token"), str):
            raise VendorRejected(self.vendor, path, response.status_code, "no access_token")
        return _token_set(body)

    # Data

    def get_json(
        self,
        path: str,
        *,
        token: SecretStr,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        """GET `api_url + path` with the user's bearer token; the JSON body, or a typed error."""
        return self._data_call("GET", path, token=token, params=params, headers=headers)

    def post_form(self, path: str, *, token: SecretStr, data: Mapping[str, str]) -> Any:
        """POST a form to `api_url + path` (Withings' style); the JSON body, or a typed error."""
        return self._data_call("POST", path, token=token, data=data)

    def request_json(
        self,
        method: str,
        path: str,
        *,
        token: SecretStr | None = None,
        app_auth: bool = False,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        data: Mapping[str, str] | None = None,
        json: Any = None,
        content: bytes | None = None,
    ) -> Any:
        """Any call to `api_url + path` with a user's bearer `token`, or with the app's own
        credentials (`app_auth`: Oura's x-client-id/x-client-secret headers). None for a 204."""
        send_headers = dict(headers or {})
        if token is not None:
            send_headers["Authorization"] = f"Bearer {token.get_secret_value()}"
        if app_auth:
            if self.api.client_secret is None:
                raise VendorRejected(self.vendor, path, None, "client secret not configured")
            send_headers["x-client-id"] = self._client_id()
            send_headers["x-client-secret"] = self.api.client_secret.get_secret_value()
        response = self._send(
            method,
            self.api.api_url + path,
            params=params,
            headers=send_headers,
            data=data,
            json=json,
            content=content,
        )
        self._raise_for_status(response, path)
        if response.status_code == 204:
            return None
        body = _json(response)
        if body is None:
            raise VendorRejected(self.vendor, path, response.status_code, "answer is not JSON")
        if self.api.facts.status_in_body:
            return self._check_status_body(body, path, response.status_code)
        return body

    def _data_call(
        self,
        method: str,
        path: str,
        *,
        token: SecretStr,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        data: Mapping[str, str] | None = None,
    ) -> Any:
        return self.request_json(
            method, path, token=token, params=params, headers=headers, data=data
        )

    def _send(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        path = self._path(url)
        if self._before_send is not None:
            self._before_send(path)
        import httpx

        started = time.perf_counter()
        try:
            response = self._http.request(method, url, **kwargs)
        except httpx.TimeoutException as exc:
            log.warning("vendor=%s method=%s path=%s outcome=timeout", self.vendor, method, path)
            raise VendorTransient(self.vendor, path, None, "timed out") from exc
        except httpx.TransportError as exc:
            log.warning(
                "vendor=%s method=%s path=%s outcome=unreachable", self.vendor, method, path
            )
            raise VendorTransient(self.vendor, path, None, type(exc).__name__) from exc
        log.info(
            "vendor=%s method=%s path=%s status=%d ms=%.1f",
            self.vendor,
            method,
            path,
            response.status_code,
            (time.perf_counter() - started) * 1000,
        )
        return response

    def _raise_for_status(self, response: httpx.Response, path: str) -> None:
        status = response.status_code
        if status < 400:
            return
        if status == 429:
            raise RateLimited(self.vendor, path, status, _retry_after(response))
        if status == 401:
            raise Unauthorized(self.vendor, path, status, "access token refused")
        if status == 404:
            raise NotFound(self.vendor, path, status, "no such record")
        if status == 409:
            raise Conflict(self.vendor, path, status, "already exists")
        if status >= 500 or status == 408:
            raise VendorTransient(self.vendor, path, status, "vendor unavailable")
        raise VendorRejected(self.vendor, path, status, "request refused")

    def _check_status_body(self, body: Any, path: str, http_status: int) -> Any:
        """Withings: HTTP 200 with `{"status": N, "body": ...}`; only N == 0 is success."""
        if not isinstance(body, dict) or "status" not in body:
            raise VendorRejected(self.vendor, path, http_status, "answer has no status")
        status = body["status"]
        if status == 0:
            inner = body.get("body")
            return inner if inner is not None else {}
        if status in _WITHINGS_RATE_LIMITED:
            raise RateLimited(self.vendor, path, http_status, DEFAULT_RETRY_AFTER_S)
        if status in _WITHINGS_AUTH_FAILED:
            raise Unauthorized(self.vendor, path, http_status, f"token refused (status {status})")
        if status in _WITHINGS_TRANSIENT:
            raise VendorTransient(self.vendor, path, http_status, f"vendor status {status}")
        raise VendorRejected(self.vendor, path, http_status, f"vendor status {status}")

    def _path(self, url: str) -> str:
        """The part of a URL that is safe and useful to log: its path."""
        return urlsplit(url).path or "/"


def _token_set(body: Mapping[str, Any]) -> TokenSet:
    expires_in = body.get("expires_in")
    expires_at = None
    if isinstance(expires_in, int | float) and not isinstance(expires_in, bool):
        expires_at = datetime.now(UTC) + timedelta(seconds=float(expires_in))
    refresh = body.get("refresh_token")
    user = body.get("user_id", body.get("userid", body.get("x_user_id")))
    scope = body.get("scope")
    return TokenSet(
        access_token=SecretStr(str(body["access_token"])),
        refresh_token=SecretStr(refresh) if isinstance(refresh, str) and refresh else None,
        expires_at=expires_at,
        scope=scope if isinstance(scope, str) else None,
        vendor_user_id=str(user) if user is not None else None,
    )


# Vendor paths and pagination (OAUTH.md). Each page is one fetched document.

_OURA_PATH_NAMES = {"vo2_max": "vO2_max"}  # webhook data_type -> REST path segment
MAX_PAGES = 10_000  # a cursor that never ends is a vendor bug, not a reason to loop forever


def oura_document(client: VendorClient, token: SecretStr, data_type: str, object_id: str) -> Any:
    """`GET /v2/usercollection/{data_type}/{object_id}` (what an Oura notification points at)."""
    segment = _OURA_PATH_NAMES.get(data_type, data_type)
    return client.get_json(f"/v2/usercollection/{segment}/{object_id}", token=token)


def oura_pages(
    client: VendorClient, token: SecretStr, data_type: str, params: Mapping[str, str]
) -> Iterator[Any]:
    """Every page of an Oura collection (`start_date`/`end_date`, or `*_datetime` for heartrate)."""
    segment = _OURA_PATH_NAMES.get(data_type, data_type)
    yield from _cursor_pages(
        client,
        token,
        f"/v2/usercollection/{segment}",
        dict(params),
        cursor_param="next_token",
        cursor_field="next_token",
    )


WHOOP_COLLECTIONS = {
    "recovery": "/v2/recovery",
    "cycle": "/v2/cycle",
    "sleep": "/v2/activity/sleep",
    "workout": "/v2/activity/workout",
}


def whoop_record(client: VendorClient, token: SecretStr, resource: str, record_id: str) -> Any:
    """One WHOOP sleep or workout (UUID) or cycle (integer id)."""
    paths = {"sleep": "/v2/activity/sleep", "workout": "/v2/activity/workout", "cycle": "/v2/cycle"}
    if resource not in paths:
        raise ValueError(f"WHOOP has no single-record route for {resource!r}")
    return client.get_json(f"{paths[resource]}/{record_id}", token=token)


def whoop_recovery_for_sleep(client: VendorClient, token: SecretStr, sleep_id: str) -> Any:
    """A v2 `recovery.*` webhook id is the SLEEP uuid: fetch the sleep, then its cycle recovery."""
    sleep = whoop_record(client, token, "sleep", sleep_id)
    cycle_id = sleep.get("cycle_id") if isinstance(sleep, dict) else None
    if cycle_id is None:
        raise NotFound("whoop", f"/v2/activity/sleep/{sleep_id}", 200, "sleep has no cycle_id")
    return client.get_json(f"/v2/cycle/{cycle_id}/recovery", token=token)


def whoop_pages(
    client: VendorClient, token: SecretStr, resource: str, params: Mapping[str, str]
) -> Iterator[Any]:
    """Every page of a WHOOP collection (`start`, `end`, `limit` <= 25).

    The cursor goes out as the `nextToken` parameter and comes back as the `next_token` field.
    """
    yield from _cursor_pages(
        client,
        token,
        WHOOP_COLLECTIONS[resource],
        {"limit": "25", **params},
        cursor_param="nextToken",
        cursor_field="next_token",
    )


FITBIT_PATHS = {
    "activities-heart": "/1/user/{user}/activities/heart/date/{date}/1d.json",
    "hrv": "/1/user/{user}/hrv/date/{date}.json",
    "temp_skin": "/1/user/{user}/temp/skin/date/{date}.json",
    "temp_core": "/1/user/{user}/temp/core/date/{date}.json",
}


def fitbit_day(
    client: VendorClient,
    token: SecretStr,
    resource: str,
    *,
    user_id: str,
    date: str,
    accept_language: str,
) -> Any:
    """One Fitbit resource for one date; units follow `accept_language` (keep it as context)."""
    path = FITBIT_PATHS[resource].format(user=user_id, date=date)
    return client.get_json(path, token=token, headers={"Accept-Language": accept_language})


def withings_getmeas_pages(
    client: VendorClient, token: SecretStr, params: Mapping[str, str]
) -> Iterator[Any]:
    """Every `getmeas` page body (`startdate`/`enddate` or `lastupdate`), following `more`."""
    form = {"action": "getmeas", **params}
    seen: set[str] = set()
    for _ in range(MAX_PAGES):
        body = client.post_form("/measure", token=token, data=form)
        yield body
        more = body.get("more") if isinstance(body, dict) else None
        offset = body.get("offset") if isinstance(body, dict) else None
        if not more or offset is None:
            return
        if str(offset) in seen:
            raise VendorRejected("withings", "/measure", 200, "pagination offset repeated")
        seen.add(str(offset))
        form = {**form, "offset": str(offset)}
    raise VendorRejected("withings", "/measure", 200, f"more than {MAX_PAGES} pages")


POLAR_HOST = "www.polaraccesslink.com"


def polar_path(api_url: str, notification_url: str) -> str:
    """The path (relative to `api_url`) a Polar notification's `url` points at.

    Only the path of a `https://www.polaraccesslink.com/v3/...` (or `api_url`) URL is used, so a
    user token is never sent to a host named by a notification body.
    """
    parts = urlsplit(notification_url)
    allowed = {POLAR_HOST, urlsplit(api_url).netloc}
    if parts.netloc not in allowed or not parts.path.startswith("/v3/"):
        raise VendorRejected("polar", parts.path or "/", None, "notification url is not AccessLink")
    return parts.path[len("/v3") :]


def polar_event_path(api_url: str, event: Mapping[str, Any]) -> str:
    """The path to GET for a Polar notification: SLEEP by its `date`, others by their `url`.

    The SLEEP `url` in Polar's own spec (`.../sleep/getSleepByDate/{date}`) looks like a
    documentation artefact (OAUTH.md), so the date decides.
    """
    if event.get("event") == "SLEEP" and isinstance(event.get("date"), str):
        return f"/users/sleep/{event['date']}"
    url = event.get("url")
    if not isinstance(url, str):
        raise VendorRejected("polar", "/", None, "notification has no url")
    return polar_path(api_url, url)


def _cursor_pages(
    client: VendorClient,
    token: SecretStr,
    path: str,
    params: dict[str, str],
    *,
    cursor_param: str,
    cursor_field: str,
) -> Iterator[Any]:
    seen: set[str] = set()
    for _ in range(MAX_PAGES):
        page = client.get_json(path, token=token, params=params)
        yield page
        cursor = page.get(cursor_field) if isinstance(page, dict) else None
        if not cursor:
            return
        if cursor in seen:
            raise VendorRejected(client.vendor, path, 200, "pagination cursor repeated")
        seen.add(cursor)
        params = {**params, cursor_param: str(cursor)}
    raise VendorRejected(client.vendor, path, 200, f"more than {MAX_PAGES} pages")


# Subscriptions (what `biobridge connect` sets up next to the tokens)

OURA_SUBSCRIPTIONS = "/v2/webhook/subscription"


def oura_subscriptions(client: VendorClient) -> list[Any]:
    """The app's Oura webhook subscriptions (each with its `expiration_time`)."""
    listed = client.request_json("GET", OURA_SUBSCRIPTIONS, app_auth=True)
    return list(listed) if isinstance(listed, list) else []


def oura_subscribe(
    client: VendorClient,
    *,
    callback_url: str,
    verification_token: SecretStr,
    event_type: str,
    data_type: str,
) -> Any:
    """Subscribe to one (event_type, data_type); Oura checks the callback's challenge first."""
    body = {
        "callback_url": callback_url,
        "verification_token": verification_token.get_secret_value(),
        "event_type": event_type,
        "data_type": data_type,
    }
    return client.request_json("POST", OURA_SUBSCRIPTIONS, app_auth=True, json=body)


def oura_renew_subscription(client: VendorClient, subscription_id: str) -> Any:
    """Push an Oura subscription's `expiration_time` forward (they expire: renew them)."""
    path = f"{OURA_SUBSCRIPTIONS}/renew/{subscription_id}"
    return client.request_json("PUT", path, app_auth=True)


def fitbit_subscribe(
    client: VendorClient,
    token: SecretStr,
    *,
    collection: str,
    subscription_id: str,
    subscriber_id: str | None = None,
) -> Any:
    """Subscribe a Fitbit user to one collection (`activities`, `body`, `sleep`, ...).

    Subscribe per collection, never to "all": both together deliver duplicates.
    """
    headers = {"X-Fitbit-Subscriber-Id": subscriber_id} if subscriber_id else None
    path = f"/1/user/-/{collection}/apiSubscriptions/{subscription_id}.json"
    return client.request_json("POST", path, token=token, headers=headers, content=b"")
