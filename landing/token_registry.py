"""Issued user tokens and their revocations, kept in the landing store (no Postgres needed).

Small objects beside the raw bodies but outside `raw/` (discovery never sees them):

    _auth/tokens/<user, base64url>/<token id>    {"user_id", "token_id", "issued_at"}
    _auth/revoked/<token id>                     {"user_id", "token_id", "revoked_at"}

One object per token and per revocation: no read-modify-write, so concurrent commands cannot
lose each other's writes. The token itself (its MAC) is never stored. The receiver lists
`_auth/revoked/` at most every BIOBRIDGE_TOKEN_REVOCATION_REFRESH_S seconds: that is the delay
after which a revoked token is refused. See docs/security.md.
"""

from __future__ import annotations

import secrets
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import anyio
import orjson

from landing.settings import Settings
from landing.store import ObjectMeta, ObjectNotFound, ObjectStore, open_store
from landing.tokens import b64, make_token

AUTH_PREFIX = "_auth/"
ISSUED_PREFIX = "_auth/tokens/"
REVOKED_PREFIX = "_auth/revoked/"


@dataclass(frozen=True)
class TokenRecord:
    """An issued token as `tokens list` shows it (never the token itself)."""

    user_id: str
    token_id: str
    issued_at: str
    revoked_at: str | None = None


def _put_json(store: ObjectStore, key: str, doc: dict[str, str]) -> None:
    body = orjson.dumps(doc)
    meta = ObjectMeta.of_body(
        body,
        received_at=datetime.now(UTC),
        vendor="auth",
        content_type="application/json",
        delivery_id=doc["token_id"],
    )
    store.put(key, body, meta)


def issue_token(store: ObjectStore, secret: bytes, user_id: str) -> tuple[str, TokenRecord]:
    """A new token for `user_id`, recorded (without its MAC) in the store's registry."""
    token_id = secrets.token_hex(8)
    token = make_token(secret, user_id, token_id)
    record = TokenRecord(user_id, token_id, datetime.now(UTC).isoformat(timespec="seconds"))
    doc = {"user_id": user_id, "token_id": token_id, "issued_at": record.issued_at}
    _put_json(store, f"{ISSUED_PREFIX}{b64(user_id.encode())}/{token_id}", doc)
    return token, record


def revoked_ids(store: ObjectStore) -> frozenset[str]:
    """Ids of every revoked token (one LIST request per 1,000 revocations)."""
    return frozenset(k.removeprefix(REVOKED_PREFIX) for k in store.list_keys(REVOKED_PREFIX))


def list_tokens(store: ObjectStore, user_id: str | None = None) -> list[TokenRecord]:
    """Issued tokens (of `user_id`, or everyone's), oldest first, with their revocation time."""
    prefix = ISSUED_PREFIX + (f"{b64(user_id.encode())}/" if user_id is not None else "")
    revoked = revoked_ids(store)
    out: list[TokenRecord] = []
    for key in store.list_keys(prefix):
        doc = orjson.loads(store.get(key)[0])
        revoked_at = None
        if doc["token_id"] in revoked:
            revoked_at = orjson.loads(store.get(REVOKED_PREFIX + doc["token_id"])[0])["revoked_at"]
        out.append(TokenRecord(doc["user_id"], doc["token_id"], doc["issued_at"], revoked_at))
    return sorted(out, key=lambda r: (r.issued_at, r.token_id))


def revoke_tokens(store: ObjectStore, user_id: str, token_id: str | None = None) -> list[str]:
    """Revoke `token_id` of `user_id`, or all of that user's tokens; the ids newly revoked."""
    now = datetime.now(UTC).isoformat(timespec="seconds")
    done: list[str] = []
    for record in list_tokens(store, user_id):
        if record.revoked_at is not None or token_id not in (None, record.token_id):
            continue
        doc = {"user_id": user_id, "token_id": record.token_id, "revoked_at": now}
        _put_json(store, REVOKED_PREFIX + record.token_id, doc)
        done.append(record.token_id)
    if token_id is not None and not done:
        try:
            store.get(f"{ISSUED_PREFIX}{b64(user_id.encode())}/{token_id}")
        except ObjectNotFound:
            raise ValueError(f"user {user_id!r} has no token {token_id!r}") from None
    return done


class RevocationList:
    """The revoked token ids as the receiver sees them: re-listed at most every `refresh_s`.

    A refresh that fails raises (the receiver answers 503): a revocation is never missed for
    longer than the documented delay because the store was unreachable.
    """

    def __init__(self, store: ObjectStore, refresh_s: float) -> None:
        self.store = store
        self.refresh_s = refresh_s
        self._ids: frozenset[str] = frozenset()
        self._read_at: float | None = None
        self._lock = anyio.Lock()

    async def is_revoked(self, token_id: str) -> bool:
        """Whether `token_id` was revoked (as of at most `refresh_s` seconds ago)."""
        if self._read_at is None or time.monotonic() - self._read_at >= self.refresh_s:
            async with self._lock:
                if self._read_at is None or time.monotonic() - self._read_at >= self.refresh_s:
                    started = time.monotonic()
                    self._ids = await anyio.to_thread.run_sync(revoked_ids, self.store)
                    self._read_at = started
        return token_id in self._ids


def tokens_command(
    action: str, *, user: str | None, token_id: str | None, settings: Settings
) -> int:
    """`biobridge tokens issue|list|revoke`: prints results, returns the exit status.

    Only `issue` prints a token, once, on stdout; nothing else ever shows or stores it.
    """
    store = open_store(settings.landing_location(), settings)
    if action == "issue":
        secret = settings.token_secret.get_secret_value() if settings.token_secret else ""
        if not secret:
            print("tokens issue: set BIOBRIDGE_TOKEN_SECRET first", file=sys.stderr)
            return 2
        if user is None:
            print("tokens issue: --user is required", file=sys.stderr)
            return 2
        try:
            token, record = issue_token(store, secret.encode(), user)
        except ValueError as exc:
            print(f"tokens issue: {exc}", file=sys.stderr)
            return 2
        print(token)
        print(
            f"issued token {record.token_id} for user {record.user_id}: send it as "
            "'Authorization: Bearer <token>'; it is shown only now",
            file=sys.stderr,
        )
        return 0
    if action == "list":
        for r in list_tokens(store, user):
            state = f"revoked {r.revoked_at}" if r.revoked_at else "active"
            print(f"{r.token_id}  {r.user_id}  issued {r.issued_at}  {state}")
        return 0
    if action == "revoke":
        if user is None:
            print("tokens revoke: --user is required", file=sys.stderr)
            return 2
        try:
            done = revoke_tokens(store, user, token_id)
        except ValueError as exc:
            print(f"tokens revoke: {exc}", file=sys.stderr)
            return 1
        print(f"revoked {len(done)} token(s) of {user}: {', '.join(done) or '-'}")
        print(
            f"receivers refuse them within BIOBRIDGE_TOKEN_REVOCATION_REFRESH_S "
            f"({settings.token_revocation_refresh_s:g} s)",
            file=sys.stderr,
        )
        return 0
    raise ValueError(f"unknown tokens action {action!r}")
