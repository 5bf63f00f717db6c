"""The vendor connection store: one OAuth connection per (vendor, Biobridge user), in Postgres.

Access and refresh tokens are Fernet ciphertexts under `BIOBRIDGE_TOKEN_ENCRYPTION_KEY`; they are
decrypted only into `SecretStr` and never logged. A connection is `active`, `needs_reauth` (the
refresh was refused, or no usable token: the user must connect again) or `revoked` (the user or
an operator withdrew it); `status_reason` and `status_at` say why and when.

Refreshes are serialised per connection with a row lock (`lock_connection`, `SELECT ... FOR
UPDATE`): the caller refreshes while holding it and stores the new pair (`store_refreshed`) in
the same transaction, before using the new access token (refresh tokens rotate: the old one is
spent).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography.fernet import Fernet, InvalidToken
from pydantic import SecretStr

from warehouse.postgres import Connection

STATUSES = ("active", "needs_reauth", "revoked")


class TokenKeyError(Exception):
    """The encryption key is missing, malformed, or not the one the tokens were stored with."""


class TokenCipher:
    """Fernet over the configured key; the key itself is never shown."""

    def __init__(self, key: SecretStr | None) -> None:
        if key is None:
            raise TokenKeyError(
                "BIOBRIDGE_TOKEN_ENCRYPTION_KEY is not set: vendor tokens are stored encrypted; "
                "make a key with `python -c 'from cryptography.fernet import Fernet; "
                "print(Fernet.generate_key().decode())'` and set it in the environment"
            )
        try:
            self._fernet = Fernet(key.get_secret_value().encode())
        except (ValueError, TypeError):
            raise TokenKeyError(
                "BIOBRIDGE_TOKEN_ENCRYPTION_KEY: expected a url-safe base64 Fernet key "
                "(32 bytes), found something else"
            ) from None

    def __repr__(self) -> str:
        return "TokenCipher(key=**********)"

    def encrypt(self, value: SecretStr) -> str:
        """The ciphertext (ASCII) of a token."""
        return self._fernet.encrypt(value.get_secret_value().encode()).decode("ascii")

    def decrypt(self, ciphertext: str) -> SecretStr:
        """The token behind a ciphertext; TokenKeyError when the key does not match."""
        try:
            return SecretStr(self._fernet.decrypt(ciphertext.encode("ascii")).decode())
        except InvalidToken:
            raise TokenKeyError(
                "a stored vendor token does not decrypt with BIOBRIDGE_TOKEN_ENCRYPTION_KEY "
                "(the key changed?): reconnect the user or restore the old key"
            ) from None


@dataclass(frozen=True)
class VendorConnection:
    """A connection as the fetch stage uses it: tokens decrypted, still secret."""

    vendor: str
    user_id: str
    vendor_user_id: str | None
    access_token: SecretStr
    refresh_token: SecretStr | None
    expires_at: datetime | None
    scope: str | None
    utc_offset_s: int | None
    status: str
    status_reason: str | None


@dataclass(frozen=True)
class ConnectionSummary:
    """What `biobridge tokens list --vendor` shows: no token material at all."""

    vendor: str
    user_id: str
    vendor_user_id: str | None
    status: str
    status_reason: str | None
    expires_at: datetime | None
    scope: str | None
    connected_at: datetime
    refreshed_at: datetime | None
    status_at: datetime


_COLUMNS = (
    "vendor, user_id, vendor_user_id, access_token_enc, refresh_token_enc, expires_at, scope, "
    "utc_offset_s, status, status_reason"
)


def _connection(row: tuple[Any, ...], cipher: TokenCipher) -> VendorConnection:
    vendor, user, vendor_user, access, refresh, expires, scope, offset, status, reason = row
    return VendorConnection(
        vendor=vendor,
        user_id=user,
        vendor_user_id=vendor_user,
        access_token=cipher.decrypt(access),
        refresh_token=cipher.decrypt(refresh) if refresh else None,
        expires_at=expires,
        scope=scope,
        utc_offset_s=offset,
        status=status,
        status_reason=reason,
    )


def save_connection(
    conn: Connection,
    cipher: TokenCipher,
    *,
    vendor: str,
    user_id: str,
    vendor_user_id: str | None,
    access_token: SecretStr,
    refresh_token: SecretStr | None,
    expires_at: datetime | None,
    scope: str | None,
    utc_offset_s: int | None = None,
) -> None:
    """Store a fresh connection (after `biobridge connect`), replacing any earlier one: active."""
    with conn.cursor() as cur:
        cur.execute(
            "INSERT INTO biobridge.vendor_connections (vendor, user_id, vendor_user_id, "
            "access_token_enc, refresh_token_enc, expires_at, scope, utc_offset_s) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8) "
            "ON CONFLICT (vendor, user_id) DO UPDATE SET vendor_user_id = EXCLUDED.vendor_user_id, "
            "access_token_enc = EXCLUDED.access_token_enc, "
            "refresh_token_enc = EXCLUDED.refresh_token_enc, expires_at = EXCLUDED.expires_at, "
            "scope = EXCLUDED.scope, utc_offset_s = EXCLUDED.utc_offset_s, status = 'active', "
            "status_reason = NULL, connected_at = now(), status_at = now(), updated_at = now()",
            (
                vendor,
                user_id,
                vendor_user_id,
                cipher.encrypt(access_token),
                cipher.encrypt(refresh_token) if refresh_token is not None else None,
                expires_at,
                scope,
                utc_offset_s,
            ),
        )
    conn.commit()


def find_connection(
    conn: Connection, cipher: TokenCipher, *, vendor: str, vendor_user_id: str | None
) -> VendorConnection | None:
    """The newest connection whose vendor user is `vendor_user_id` (any status), or None.

    A vendor without user ids in its notifications (`vendor_user_id` None) matches when the
    vendor has exactly one connection.
    """
    with conn.cursor() as cur:
        if vendor_user_id is None:
            cur.execute(
                f"SELECT {_COLUMNS} FROM biobridge.vendor_connections WHERE vendor = $1 "  # noqa: S608
                "ORDER BY connected_at DESC LIMIT 2",
                (vendor,),
            )
            rows = cur.fetchall()
            rows = rows if len(rows) == 1 else []
        else:
            cur.execute(
                f"SELECT {_COLUMNS} FROM biobridge.vendor_connections "  # noqa: S608
                "WHERE vendor = $1 AND vendor_user_id = $2 ORDER BY connected_at DESC LIMIT 1",
                (vendor, vendor_user_id),
            )
            rows = cur.fetchall()
    return _connection(rows[0], cipher) if rows else None


def lock_connection(
    conn: Connection, cipher: TokenCipher, *, vendor: str, user_id: str
) -> VendorConnection | None:
    """Lock the connection row for a refresh (until the transaction ends); re-read under lock.

    Another process that refreshed meanwhile has stored its new pair: the caller sees it and
    need not refresh again.
    """
    with conn.cursor() as cur:
        cur.execute(
            f"SELECT {_COLUMNS} FROM biobridge.vendor_connections "  # noqa: S608
            "WHERE vendor = $1 AND user_id = $2 FOR UPDATE",
            (vendor, user_id),
        )
        rows = cur.fetchall()
    return _connection(rows[0], cipher) if rows else None


def store_refreshed(
    conn: Connection,
    cipher: TokenCipher,
    *,
    vendor: str,
    user_id: str,
    access_token: SecretStr,
    refresh_token: SecretStr | None,
    expires_at: datetime | None,
    scope: str | None,
) -> None:
    """Persist a rotated pair (call under `lock_connection`, then commit before using it)."""
    with conn.cursor() as cur:
        cur.execute(
            "UPDATE biobridge.vendor_connections SET access_token_enc = $3, "
            "refresh_token_enc = coalesce($4, refresh_token_enc), expires_at = $5, "
            "scope = coalesce($6, scope), refreshed_at = now(), updated_at = now() "
            "WHERE vendor = $1 AND user_id = $2",
            (
                vendor,
                user_id,
                cipher.encrypt(access_token),
                cipher.encrypt(refresh_token) if refresh_token is not None else None,
                expires_at,
                scope,
            ),
        )


def set_status(
    conn: Connection,
    *,
    vendor: str,
    user_id: str | None,
    status: str,
    reason: str,
    vendor_user_id: str | None = None,
) -> int:
    """Mark connections (one user, or by vendor user id) `needs_reauth` or `revoked`, with why.

    Revoking also forgets the tokens' ciphertexts' usefulness: the tokens stay encrypted but the
    fetch stage uses only active connections. Returns how many rows changed.
    """
    if status not in STATUSES:
        raise ValueError(f"status: expected one of {', '.join(STATUSES)}, found {status!r}")
    with conn.cursor() as cur:
        cur.execute(
            "UPDATE biobridge.vendor_connections SET status = $3, status_reason = $4, "
            "status_at = now(), updated_at = now() WHERE vendor = $1 "
            "AND (user_id = $2 OR ($2::text IS NULL AND vendor_user_id = $5)) "
            "AND status <> 'revoked' RETURNING 1",
            (vendor, user_id, status, reason, vendor_user_id),
        )
        return len(cur.fetchall())


def list_connections(conn: Connection, *, vendor: str | None = None) -> list[ConnectionSummary]:
    """Every connection (of one vendor), without token material."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT vendor, user_id, vendor_user_id, status, status_reason, expires_at, scope, "
            "connected_at, refreshed_at, status_at FROM biobridge.vendor_connections "
            "WHERE vendor = coalesce($1, vendor) ORDER BY vendor, user_id",
            (vendor,),
        )
        return [ConnectionSummary(*row) for row in cur.fetchall()]
