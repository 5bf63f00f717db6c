"""Oura API v2 fetched documents (spec section 3).

``GET /v2/usercollection/{data_type}/{id}`` gives one document; collections give a page
``{"data": [...], "next_token"}``. Daily documents are stamped by ``timestamp`` (ISO 8601 with
offset), ``sleep`` by ``bedtime_start``, ``daily_spo2`` by ``day``, each heart-rate sample by its
``timestamp``. A sleep's ``heart_rate`` / ``hrv`` series ``{interval, items[], timestamp}`` is a
record of its own: item *i* is at ``timestamp + i x interval``. One `OuraRecord` row per document
or series, one `OuraValue` row per mapped field or non-null sample item.
"""

from __future__ import annotations

from schemas.vendors.fetched import FetchedRecord, FetchedValue

NAME = "oura"


class OuraRecord(FetchedRecord):
    """One Oura document (or page element), or one sample series of a sleep."""


class OuraValue(FetchedValue):
    """One mapped field (``score``, ``contributors.hrv_balance``) or one sample item."""
