"""Object keys: partitioned by vendor, date and hour so a date range of one vendor lists cheaply.

    raw/{vendor}/dt=YYYY-MM-DD/hour=HH/{YYYYMMDDTHHMMSSffffffZ}-{16 hex}.{ext}

Keys sort by receipt time within a partition, and every part is built from validated values.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from landing.vendors import REGISTRY

RAW_PREFIX = "raw/"
PROBE_PREFIX = "_probe/"

VENDORS: tuple[str, ...] = tuple(REGISTRY)
"""The routed vendors: the one list, from the vendor registry (`landing.vendors`)."""

EXTENSIONS: tuple[str, ...] = ("json", "form")
_VENDOR_SET = frozenset(VENDORS)

KEY_PATTERN = (
    r"raw/(?P<vendor>[a-z_]+)/dt=(?P<date>[0-9]{4}-[0-9]{2}-[0-9]{2})/hour=(?P<hour>[0-9]{2})/"
    r"(?P<stamp>[0-9]{8}T[0-9]{12}Z)-(?P<rand>[0-9a-f]{16})\.(?P<ext>json|form)"
)
"""A landed object's key, to be matched whole (Python's `re` and Rust's regex, as Polars uses)."""
_KEY_RE = re.compile(KEY_PATTERN)


@dataclass(frozen=True)
class KeyParts:
    """What a landed object's key says about it."""

    vendor: str
    received_at: datetime
    ext: str


def new_key(vendor: str, received_at: datetime, *, ext: str = "json") -> str:
    """A fresh, unique, time-sortable key for a body received now from `vendor`."""
    # From isoformat, not strftime: the same digits at a quarter of the cost (a hot path).
    t = received_at.astimezone(UTC).isoformat(timespec="microseconds")  # 2025-07-10T06:41:48.123456
    return key_at(vendor, t, secrets.token_hex(8), ext=ext)


def key_at(vendor: str, at: str, rand: str, *, ext: str = "json") -> str:
    """The key of a body of `vendor` received at `at` (a UTC `isoformat(timespec=
    "microseconds")`), made unique by `rand` (16 random hex digits): `new_key`'s hot half."""
    if vendor not in _VENDOR_SET:
        raise ValueError(f"unknown vendor {vendor!r}: expected one of {', '.join(VENDORS)}")
    if ext not in EXTENSIONS:
        raise ValueError(f"unknown extension {ext!r}: expected one of {', '.join(EXTENSIONS)}")
    return (
        f"{RAW_PREFIX}{vendor}/dt={at[:10]}/hour={at[11:13]}/"
        f"{at[:4]}{at[5:7]}{at[8:10]}T{at[11:13]}{at[14:16]}{at[17:19]}{at[20:26]}Z"
        f"-{rand}.{ext}"
    )


def parse_key(key: str) -> KeyParts:
    """Split a landed key into its parts; ValueError names the key when it is not one of ours."""
    m = _KEY_RE.fullmatch(key)  # `$` would let a trailing newline through; ASCII digits only
    if m is None or m["vendor"] not in VENDORS:
        raise ValueError(f"not a landed object key: {key!r}")
    received_at = datetime.strptime(m["stamp"], "%Y%m%dT%H%M%S%fZ").replace(tzinfo=UTC)
    return KeyParts(vendor=m["vendor"], received_at=received_at, ext=m["ext"])


def partition_prefix(vendor: str, at: datetime) -> str:
    """The prefix of the hour partition that holds objects of `vendor` received at `at`."""
    ts = at.astimezone(UTC)
    return f"{RAW_PREFIX}{vendor}/dt={ts:%Y-%m-%d}/hour={ts:%H}/"


def hour_prefixes(vendor: str, start: datetime, end: datetime) -> list[str]:
    """Hour partition prefixes of `vendor` covering [start, end], oldest first."""
    cur = start.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    stop = end.astimezone(UTC)
    out: list[str] = []
    while cur <= stop:
        out.append(partition_prefix(vendor, cur))
        cur += timedelta(hours=1)
    return out
