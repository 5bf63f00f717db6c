"""The fetch stage: resolve due pointer notifications into landed documents, or say why not.

For each claimed notification: plan its requests (the vendor module, pure), find the user's
connection, GET (refreshing the token before expiry, or once after a 401; retrying 5xx and
timeouts with the one retry policy's backoff and jitter), land each document as raw JSON under
the normal key layout with metadata naming vendor, resource, user and notification, and record
the outcome. The next discovery lists the documents and the normal ingest loads them.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime

import orjson
from pydantic import SecretStr

from landing.keys import new_key
from landing.store import ObjectMeta, ObjectStore
from schemas.loads import FetchCounts
from tasks.fetch.limiter import VendorRateLimiter
from tasks.fetch.model import Action, FetchRequest, NothingToFetch, PlanContext
from tasks.fetch.registry import REGISTRY
from tasks.read import LandedFile, ParseFailure, fetch_objects, parse_body
from tasks.vendor_http import (
    NeedsReauthorization,
    NotFound,
    RateLimited,
    Unauthorized,
    VendorClient,
    VendorHttpError,
    VendorRejected,
    VendorTransient,
)
from tasks.vendor_settings import VendorApiSettings
from warehouse import connections as store_conn
from warehouse import notifications as ledger
from warehouse.connections import TokenCipher, TokenKeyError, VendorConnection
from warehouse.postgres import Connection, one_row

log = logging.getLogger(__name__)

REFRESH_MARGIN_S = 300.0
"""Refresh an access token this long before it expires."""
MAX_BACKOFF_S = 3600.0


@dataclass(frozen=True)
class FetchPolicy:
    """The retry policy's numbers (BIOBRIDGE_IO_RETRIES, BIOBRIDGE_RETRY_BACKOFF_S) and batch."""

    retries: int
    backoff_s: float
    batch: int
    jitter_factor: float = 0.5

    def delay(self, attempt: int) -> float:
        """Seconds before retry `attempt` (0-based): doubling, with jitter (as the tasks do)."""
        base: float = self.backoff_s * 2**attempt
        return base * (1 + random.uniform(-self.jitter_factor, self.jitter_factor))  # noqa: S311


@dataclass(frozen=True)
class Outcome:
    """Where one notification ends this run."""

    state: str
    reason: str | None
    vendor_user_id: str | None = None
    documents: int = 0
    rows_deleted: int = 0
    retry_in_s: float | None = None


@dataclass
class FetchRun:
    """One run of the stage: its connections, clients, limiter state and counts."""

    conn: Connection  # holds the claims; documents and outcomes commit with them
    tokens: Connection  # connection reads, refreshes and status changes, committed at once
    store: ObjectStore
    apis: VendorApiSettings
    policy: FetchPolicy
    cipher: TokenCipher | None
    cipher_problem: str | None
    load_id: int
    limiter: VendorRateLimiter
    counts: FetchCounts = field(default_factory=FetchCounts)
    clients: dict[str, VendorClient] = field(default_factory=dict)
    blocked_until: dict[str, float] = field(default_factory=dict)
    current_user: str | None = None
    # Window pulls (no record_ref, e.g. Oura's day of heartrate) already done this run: several
    # notifications of one user and day need the same pull once.
    pulled: set[tuple[str, str | None, str, str]] = field(default_factory=set)
    # Documents to land before the batch's outcomes commit (puts are fsync'd: done in parallel).
    to_land: list[tuple[str, bytes, ObjectMeta]] = field(default_factory=list)
    # Connections read this run, by (vendor, vendor user); dropped when refreshed or marked.
    known: dict[tuple[str, str | None], VendorConnection] = field(default_factory=dict)

    def client(self, vendor: str) -> VendorClient:
        if vendor not in self.clients:
            self.clients[vendor] = VendorClient(
                self.apis.api(vendor),
                timeout_s=self.apis.vendor_timeout_s,
                before_send=self.limiter.hook(vendor, lambda: self.current_user),
            )
        return self.clients[vendor]

    def close(self) -> None:
        for client in self.clients.values():
            client.close()


def fetch_notifications(
    conn: Connection,
    tokens: Connection,
    store: ObjectStore,
    *,
    apis: VendorApiSettings,
    policy: FetchPolicy,
    token_key: SecretStr | None,
    load_id: int,
    vendors: Sequence[str],
    limiter: VendorRateLimiter,
) -> FetchCounts:
    """Resolve every due notification of `vendors`; the counts of what happened."""
    vendors = [v for v in vendors if v in REGISTRY]
    started = time.perf_counter()
    cipher, problem = None, None
    try:
        cipher = TokenCipher(token_key)
    except TokenKeyError as exc:
        problem = str(exc)
    run = FetchRun(conn, tokens, store, apis, policy, cipher, problem, load_id, limiter)
    if not vendors:
        return run.counts
    ledger.register_deferred(conn, vendors=vendors)
    with conn.cursor() as cur:
        cur.execute("SELECT clock_timestamp()")
        (run_started,) = one_row(cur)
    conn.commit()
    try:
        while due := ledger.claim_due(
            conn, vendors=vendors, limit=policy.batch, run_started=run_started
        ):
            files = fetch_objects(store, [d.key for d in due])
            for notice, landed in zip(due, files, strict=True):
                outcome = resolve(run, landed, attempts=notice.attempts)
                ledger.record_outcome(
                    conn,
                    notice.key,
                    state=outcome.state,
                    reason=outcome.reason,
                    vendor_user_id=outcome.vendor_user_id,
                    load_id=load_id,
                    documents=outcome.documents,
                    rows_deleted=outcome.rows_deleted,
                    retry_in_s=outcome.retry_in_s,
                )
                run.counts.notifications_claimed += 1
                run.counts.count(outcome.state)
                if outcome.reason is not None:
                    run.counts.reasons[f"{outcome.state}: {outcome.reason[:200]}"] += 1
                run.counts.documents_landed += outcome.documents
                run.counts.rows_marked_deleted += outcome.rows_deleted
                log.info(
                    "notification=%s vendor=%s outcome=%s documents=%d",
                    notice.key,
                    notice.vendor,
                    outcome.state,
                    outcome.documents,
                )
            land_documents(run)  # durable before the outcomes that name them commit
            conn.commit()
        conn.rollback()
    finally:
        run.close()
    run.counts.seconds_fetching = round(time.perf_counter() - started, 3)
    return run.counts


def resolve(run: FetchRun, landed: LandedFile, *, attempts: int) -> Outcome:
    """Plan, fetch and land what one notification points at; its outcome."""
    vendor = landed.meta.vendor
    module = REGISTRY[vendor]
    payload = parse_body(landed)
    if isinstance(payload, ParseFailure):
        return Outcome("failed", payload.reason)
    user = module.user_of(payload)
    if (until := run.blocked_until.get(vendor, 0.0)) > time.time():
        return _rate_limited(vendor, user, until - time.time())
    context = PlanContext(
        api_url=run.apis.api(vendor).api_url,
        fitbit_accept_language=run.apis.fitbit_accept_language,
    )
    try:
        requests = module.plan(payload, context)
    except NothingToFetch as exc:
        return Outcome("resolved_empty", f"nothing to fetch: {exc}", user)
    except VendorRejected as exc:
        return Outcome("failed", str(exc), user)
    documents, deleted, empty = 0, 0, []
    for request in requests:
        try:
            if request.action is Action.REVOKE:
                _revoke(run, request)
                empty.append("the user revoked access at the vendor: connection marked revoked")
                continue
            if request.action is Action.DELETE:
                deleted += ledger.mark_rows_deleted(
                    run.conn,
                    vendor=vendor,
                    record_ref=request.record_ref or "",
                    deleted_by=landed.key,
                )
                continue
            if request.record_ref is None:
                what = f"{request.target} {sorted(request.params.items())}"
                pull = (vendor, request.vendor_user_id, request.resource, what)
                if pull in run.pulled:
                    empty.append(f"{request.resource} {what}: fetched once this run already")
                    continue
                run.pulled.add(pull)
            landed_now = _fetch_and_land(run, landed, request)
            documents += landed_now
            if not landed_now:
                empty.append(f"{request.resource} {request.target}: the vendor has no data")
        except NotFound as exc:
            empty.append(str(exc))
        except RateLimited as exc:
            run.blocked_until[vendor] = time.time() + exc.retry_after_s
            return _rate_limited(vendor, user, exc.retry_after_s, documents)
        except VendorTransient as exc:
            wait = min(MAX_BACKOFF_S, run.policy.backoff_s * 2 ** (attempts + 1))
            return Outcome(
                "retry_later", f"{exc}; retrying in {wait:g} s", user, documents, retry_in_s=wait
            )
        except NeedsReauthorization as exc:
            return Outcome("needs_reauth", str(exc), request.vendor_user_id or user, documents)
        except TokenKeyError as exc:  # the key changed: the stored tokens are unreadable
            return Outcome("needs_reauth", str(exc), request.vendor_user_id or user, documents)
        except VendorHttpError as exc:
            return Outcome("failed", str(exc), user, documents)
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            # A vendor answer of a shape the fetch module did not expect: a Biobridge bug or a
            # vendor change. This notification fails with the reason; the run goes on.
            reason = f"unexpected answer for {request.resource} ({type(exc).__name__}: {exc})"
            return Outcome("failed", reason, user, documents)
    if documents:
        return Outcome("fetched", None, user, documents, deleted)
    if any(r.action is Action.DELETE for r in requests):
        return Outcome("deleted", f"vendor deleted it: {deleted} rows marked", user, 0, deleted)
    return Outcome("resolved_empty", "; ".join(empty) or "nothing returned", user)


PUT_WORKERS = 8


def land_documents(run: FetchRun) -> None:
    """Put the batch's fetched documents in the store, in parallel; raise if any put fails."""
    batch, run.to_land = run.to_land, []
    if not batch:
        return
    with ThreadPoolExecutor(max_workers=min(PUT_WORKERS, len(batch))) as pool:
        list(pool.map(lambda item: run.store.put(*item), batch))


def _rate_limited(vendor: str, user: str | None, wait_s: float, documents: int = 0) -> Outcome:
    wait = max(1.0, wait_s)
    reason = f"{vendor} rate limit: next attempt in {wait:g} s"
    return Outcome("rate_limited", reason, user, documents, retry_in_s=wait)


def _revoke(run: FetchRun, request: FetchRequest) -> None:
    run.known.pop((request.vendor, request.vendor_user_id), None)
    changed = store_conn.set_status(
        run.tokens,
        vendor=request.vendor,
        user_id=None,
        vendor_user_id=request.vendor_user_id,
        status="revoked",
        reason=f"the user revoked access at {request.vendor} ({_now()})",
    )
    run.tokens.commit()
    run.counts.connections_marked += changed


def _connection(run: FetchRun, request: FetchRequest) -> VendorConnection:
    """The active connection of the request's user, or NeedsReauthorization saying why not."""
    vendor, who = request.vendor, request.vendor_user_id
    if run.cipher is None:
        raise NeedsReauthorization(vendor, "-", None, run.cipher_problem or "no token key")
    found = run.known.get((vendor, who))
    if found is None:
        found = store_conn.find_connection(
            run.tokens, run.cipher, vendor=vendor, vendor_user_id=who
        )
        run.tokens.commit()
        if found is not None and found.status == "active":
            run.known[(vendor, who)] = found
    if found is None:
        raise NeedsReauthorization(
            vendor,
            "-",
            None,
            f"no connection for {vendor} user {who}: run `biobridge connect {vendor} --user U`",
        )
    if found.status != "active":
        raise NeedsReauthorization(
            vendor, "-", None, f"connection {found.status}: {found.status_reason}"
        )
    return found


def _fetch_and_land(run: FetchRun, notification: LandedFile, request: FetchRequest) -> int:
    """GET with the user's token (refresh once on 401; retry transient failures); land."""
    connection = _connection(run, request)
    client = run.client(request.vendor)
    run.current_user = request.vendor_user_id
    token = connection.access_token
    if (
        connection.expires_at is not None
        and (connection.expires_at - datetime.now(UTC)).total_seconds() < REFRESH_MARGIN_S
    ):
        token = _refresh(run, client, connection, used=token)
    module = REGISTRY[request.vendor]
    refreshed, attempt = False, 0
    while True:
        try:
            documents = module.fetch(client, token, request)
            break
        except Unauthorized:
            if refreshed:
                _mark(run, connection, "access token refused right after a refresh")
                raise NeedsReauthorization(
                    request.vendor, "-", 401, "access token refused after a refresh"
                ) from None
            token, refreshed = _refresh(run, client, connection, used=token), True
        except VendorTransient as exc:
            if attempt >= run.policy.retries:
                raise
            delay = run.policy.delay(attempt)
            log.warning(
                "vendor=%s transient failure (%s); retry in %.2f s", request.vendor, exc, delay
            )
            time.sleep(delay)
            attempt += 1
    extra = (
        {"utc_offset_seconds": str(connection.utc_offset_s)}
        if (request.vendor == "fitbit" and connection.utc_offset_s is not None)
        else {}
    )
    for number, document in enumerate(documents):
        body = orjson.dumps(document.body)
        now = datetime.now(UTC)
        key = new_key(request.vendor, now)
        context = {
            **({"user_id": request.vendor_user_id} if request.vendor_user_id else {}),
            **request.context,
            **extra,
            "resource": document.resource,
            "notification_key": notification.key,
            "fetched": "vendor-api",
        }
        meta = ObjectMeta.of_body(
            body,
            received_at=now,
            vendor=request.vendor,
            content_type="application/json",
            delivery_id=f"{notification.meta.delivery_id}/fetch/{number}",
            delivery_id_source="fetch",
            signature="vendor-api-fetch",
            context=context,
        )
        run.to_land.append((key, body, meta))
        ledger.record_document(
            run.conn,
            object_key=key,
            notification_key=notification.key,
            vendor=request.vendor,
            resource=document.resource,
            record_ref=document.record_ref,
        )
    return len(documents)


def _refresh(
    run: FetchRun, client: VendorClient, connection: VendorConnection, *, used: SecretStr
) -> SecretStr:
    """A usable access token after a refresh, serialised per connection by a row lock.

    If another process refreshed while we waited for the lock, its stored token is used. The
    rotated pair is committed before the new access token is used.
    """
    assert run.cipher is not None  # _connection checked it
    run.known.pop((connection.vendor, connection.vendor_user_id), None)
    locked = store_conn.lock_connection(
        run.tokens, run.cipher, vendor=connection.vendor, user_id=connection.user_id
    )
    try:
        if locked is None or locked.status != "active":
            raise NeedsReauthorization(connection.vendor, "-", None, "connection not active")
        if locked.access_token.get_secret_value() != used.get_secret_value():
            run.tokens.commit()
            return locked.access_token
        fresh = client.refresh(locked.refresh_token)
    except NeedsReauthorization as exc:
        run.tokens.rollback()
        _mark(run, connection, f"token refresh refused ({exc.reason})")
        raise
    except BaseException:
        run.tokens.rollback()
        raise
    store_conn.store_refreshed(
        run.tokens,
        run.cipher,
        vendor=connection.vendor,
        user_id=connection.user_id,
        access_token=fresh.access_token,
        refresh_token=fresh.refresh_token,
        expires_at=fresh.expires_at,
        scope=fresh.scope,
    )
    run.tokens.commit()
    run.counts.token_refreshes += 1
    return fresh.access_token


def _mark(run: FetchRun, connection: VendorConnection, why: str) -> None:
    run.known.pop((connection.vendor, connection.vendor_user_id), None)
    changed = store_conn.set_status(
        run.tokens,
        vendor=connection.vendor,
        user_id=connection.user_id,
        status="needs_reauth",
        reason=f"{why} at {_now()}: run `biobridge connect {connection.vendor} "
        f"--user {connection.user_id}`",
    )
    run.tokens.commit()
    run.counts.connections_marked += changed


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
