"""Which routes accept unauthenticated posts, and the startup rule that makes that a choice.

A route is open while its credential setting is unset (Withings has none to set). On a loopback
bind (the local quick start) open routes are allowed and logged once, loudly. On any other bind
the receiver refuses to start while a route is open and not named in BIOBRIDGE_OPEN_ROUTES.
"""

from __future__ import annotations

import ipaddress
import logging

from pydantic import SecretStr

from landing.settings import Settings

logger = logging.getLogger("biobridge.receiver")

# route -> (settings field, environment variable) of its credential; None: it has none.
CREDENTIALS: dict[str, tuple[str, str] | None] = {
    "oura": ("oura_client_secret", "BIOBRIDGE_OURA_CLIENT_SECRET"),
    "whoop": ("whoop_client_secret", "BIOBRIDGE_WHOOP_CLIENT_SECRET"),
    "garmin": ("garmin_client_id", "BIOBRIDGE_GARMIN_CLIENT_ID"),
    "fitbit": ("fitbit_client_secret", "BIOBRIDGE_FITBIT_CLIENT_SECRET"),
    "withings": None,
    "polar": ("polar_signature_secret", "BIOBRIDGE_POLAR_SIGNATURE_SECRET"),
    "apple_health": ("token_secret", "BIOBRIDGE_TOKEN_SECRET"),
    # The generic shape, on /webhooks/generic and also on /webhooks/oura and /apple_health.
    "generic": ("generic_token", "BIOBRIDGE_GENERIC_TOKEN"),
}
OPT_OUT = "BIOBRIDGE_OPEN_ROUTES"


class OpenRoutesRefused(RuntimeError):
    """The receiver must not start: the message says which settings to set."""


def open_routes(settings: Settings) -> list[str]:
    """Routes that accept posts without any credential (opted out or not)."""
    out = []
    for route, credential in CREDENTIALS.items():
        value = getattr(settings, credential[0]) if credential else None
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if not value:
            out.append(route)
    return out


def opted_out(settings: Settings) -> set[str]:
    """The routes named in BIOBRIDGE_OPEN_ROUTES; ValueError on a name that is not a route."""
    names = {n.strip() for n in settings.open_routes.split(",") if n.strip()}
    unknown = sorted(names - CREDENTIALS.keys())
    if unknown:
        raise ValueError(
            f"{OPT_OUT} names unknown routes {', '.join(unknown)}: "
            f"expected some of {', '.join(CREDENTIALS)}"
        )
    return names


def is_loopback(host: str) -> bool:
    """Whether the bind address only accepts connections from this machine."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False  # a host name other than localhost: assume reachable


def check_open_routes(settings: Settings) -> list[str]:
    """Enforce the open-routes rule for `settings.host`; returns the open routes (logged once).

    Raises OpenRoutesRefused (naming the settings to set) on a non-loopback bind with an open
    route not named in BIOBRIDGE_OPEN_ROUTES, and ValueError for a malformed opt-out list.
    """
    routes = open_routes(settings)
    allowed = opted_out(settings)
    loopback = is_loopback(settings.host)
    unprotected = [r for r in routes if r not in allowed]
    if unprotected and not loopback:
        fixes = []
        for route in unprotected:
            cred = CREDENTIALS[route]
            fixes.append(f"{route}: set {cred[1]}" if cred else f"{route}: no secret exists")
        raise OpenRoutesRefused(
            f"refusing to serve on non-loopback address {settings.host}: routes "
            f"{', '.join(unprotected)} would accept unauthenticated posts ({'; '.join(fixes)}). "
            f"Set those secrets, or accept it explicitly with "
            f"{OPT_OUT}={','.join(r for r in CREDENTIALS if r in {*allowed, *unprotected})}"
        )
    if routes:
        why = "bound to loopback" if loopback else f"allowed by {OPT_OUT}"
        logger.warning(
            "OPEN ROUTES (%s): /webhooks/{%s} accept unauthenticated posts; set their secrets "
            "(docs/vendors/) before exposing this receiver",
            why,
            ",".join(routes),
        )
    return routes
