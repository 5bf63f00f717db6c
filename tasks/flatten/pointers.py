"""Vendors whose webhooks only point at data (Oura, WHOOP, Fitbit, Withings, Polar), until each
has its own module (`tasks/flatten/<vendor>.py`, same names as `garmin.py`).

Each `PointerVendor` satisfies `VendorFlatten`: its pointer body is the resource NOTIFICATION,
which gives no rows (POINTER). Oura also receives the generic shape, unsigned.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any
from urllib.parse import parse_qs

from tasks.flatten import generic
from tasks.flatten.model import NOTIFICATION, POINTER, Flattener

_OURA_SIGNATURE = "x-oura-signature"


@dataclass
class PointerVendor:
    """A vendor module's names for a vendor that only sends pointers (see `VendorFlatten`)."""

    NAME: str
    EXPECTED: str
    detect: Callable[[Any, Mapping[str, str]], str | None]
    RESOURCES: Mapping[str, Flattener | None] = field(
        default_factory=lambda: MappingProxyType({NOTIFICATION: POINTER})
    )


def _oura(payload: Any, headers: Mapping[str, str]) -> str | None:
    if generic.is_generic_shape(payload) and _OURA_SIGNATURE not in headers:
        return generic.RESOURCE
    if type(payload) is dict and {"event_type", "data_type"} <= payload.keys():
        return NOTIFICATION
    return None


def _whoop(payload: Any, headers: Mapping[str, str]) -> str | None:
    if type(payload) is dict and {"type", "id"} <= payload.keys():
        return NOTIFICATION
    return None


def _fitbit(payload: Any, headers: Mapping[str, str]) -> str | None:
    if type(payload) is list and all(
        type(item) is dict and "collectionType" in item for item in payload
    ):
        return NOTIFICATION
    return None


def _withings(payload: Any, headers: Mapping[str, str]) -> str | None:
    if isinstance(payload, bytes | bytearray):
        payload = payload.decode("utf-8", errors="replace")
    if type(payload) is str:
        payload = parse_qs(payload)
    if type(payload) is dict and "userid" in payload:
        return NOTIFICATION
    return None


def _polar(payload: Any, headers: Mapping[str, str]) -> str | None:
    if type(payload) is dict and "event" in payload:
        return NOTIFICATION
    return None


oura = PointerVendor(
    NAME="oura",
    EXPECTED="a pointer {event_type, data_type, object_id, user_id} or, unsigned, the generic "
    "shape {user_id, timestamp, data: {...}}",
    detect=_oura,
    RESOURCES=MappingProxyType({NOTIFICATION: POINTER, generic.RESOURCE: generic.flatten_batch}),
)
whoop = PointerVendor("whoop", "a pointer {user_id, id, type, trace_id}", _whoop)
fitbit = PointerVendor(
    "fitbit", "a list of pointers [{collectionType, date, ownerId, ...}]", _fitbit
)
withings = PointerVendor(
    "withings", "a form pointer userid=...&appli=...&startdate=...&enddate=...", _withings
)
polar = PointerVendor("polar", "a pointer {event, user_id, timestamp, url} or a PING", _polar)
