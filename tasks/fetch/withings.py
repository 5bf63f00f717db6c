"""Withings: a notification names a user and a window; Getmeas every group measured or changed
since the window's start (`lastupdate`), every page.

`lastupdate` rather than `startdate`/`enddate`: it also returns groups edited or deleted after
they were first sent, and a missed notification is caught up by the next one.
"""

from __future__ import annotations

from typing import Any

from pydantic import SecretStr

from tasks.fetch.model import FetchedDocument, FetchRequest, NothingToFetch, PlanContext, text
from tasks.vendor_http import VendorClient, withings_getmeas_pages

NAME = "withings"
RESOURCE = "getmeas"


def user_of(payload: Any) -> str | None:
    """The form's `userid`."""
    return text(payload.get("userid")) if isinstance(payload, dict) else None


def plan(payload: Any, context: PlanContext) -> list[FetchRequest]:
    """One Getmeas (all pages) from the window's start."""
    if not isinstance(payload, dict):
        raise NothingToFetch("a Withings notification is a form")
    since = text(payload.get("startdate")) or text(payload.get("date"))
    if since is None or not since.isdigit():
        raise NothingToFetch("the notification has no startdate (epoch seconds)")
    return [FetchRequest(NAME, RESOURCE, user_of(payload), params={"lastupdate": since})]


def fetch(client: VendorClient, token: SecretStr, request: FetchRequest) -> list[FetchedDocument]:
    """Each non-empty Getmeas page as one document."""
    return [
        FetchedDocument(RESOURCE, page)
        for page in withings_getmeas_pages(client, token, request.params)
        if isinstance(page, dict) and page.get("measuregrps")
    ]
