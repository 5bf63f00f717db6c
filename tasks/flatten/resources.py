"""Which resource a landed body is, from its route (vendor), its parsed body and its headers."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from tasks.flatten import fitbit, oura, polar, whoop, withings
from tasks.flatten.documents import NOTIFICATION
from tasks.flatten.generic import is_generic_shape

__all__ = ["NOTIFICATION", "UnrecognisedBody", "resource_of"]


class UnrecognisedBody(ValueError):
    """The body is not any shape that route receives: quarantine the file with this reason."""


def resource_of(vendor: str, payload: Any, headers: Mapping[str, str]) -> str:
    """The resource of a body landed on ``/webhooks/<vendor>``.

    Raises UnrecognisedBody (a ValueError) naming what was expected and what was found.
    """
    detect = _DETECTORS.get(vendor)
    if detect is None:
        raise UnrecognisedBody(
            f"route vendor: expected one of {', '.join(_DETECTORS)}, found {vendor!r}"
        )
    lower = {name.lower(): value for name, value in headers.items()}
    resource = detect(payload, lower)
    if resource is None:
        raise UnrecognisedBody(
            f"/webhooks/{vendor} body: expected {_EXPECTED[vendor]}, found {_shape(payload)}"
        )
    return resource


def _apple_health(payload: Any, headers: Mapping[str, str]) -> str | None:
    if type(payload) is not dict or type(payload.get("data")) is not dict:
        return None
    data = payload["data"]
    if "metrics" in data or "workouts" in data:
        return "hae"
    return "generic" if is_generic_shape(payload) else "hae"


def _generic(payload: Any, headers: Mapping[str, str]) -> str | None:
    return "generic" if is_generic_shape(payload, strict=False) else None


def _garmin(payload: Any, headers: Mapping[str, str]) -> str | None:
    if type(payload) is not dict or not all(type(v) is list for v in payload.values()):
        return None
    items = [item for summaries in payload.values() for item in summaries]
    if items and all(type(item) is dict and "callbackURL" in item for item in items):
        return "ping"
    return "push"


_DETECTORS: Mapping[str, Callable[[Any, Mapping[str, str]], str | None]] = MappingProxyType(
    {
        "oura": oura.detect,
        "whoop": whoop.detect,
        "garmin": _garmin,
        "fitbit": fitbit.detect,
        "withings": withings.detect,
        "polar": polar.detect,
        "apple_health": _apple_health,
        "generic": _generic,
    }
)

_EXPECTED: Mapping[str, str] = MappingProxyType(
    {
        "oura": oura.EXPECTED,
        "whoop": whoop.EXPECTED,
        "garmin": "an object of summary lists {<summaryType>: [...]} (push or ping)",
        "fitbit": fitbit.EXPECTED,
        "withings": withings.EXPECTED,
        "polar": polar.EXPECTED,
        "apple_health": 'a Health Auto Export body {"data": {"metrics": [...], '
        '"workouts": [...]}} or the generic shape',
        "generic": "the generic shape {user_id, timestamp, data: {...}}",
    }
)


def _shape(payload: Any) -> str:
    if type(payload) is dict:
        keys = ", ".join(sorted(map(str, payload))[:12])
        return f"an object with keys [{keys}]"
    if type(payload) is list:
        return f"a list of {len(payload)} items"
    return f"a {type(payload).__name__}"
