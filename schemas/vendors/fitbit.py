"""Fitbit Web API fetched summaries (spec section 6).

Each body is ``{"<key>": [entry, ...]}`` for one resource: ``activities-heart``, ``hrv``,
``tempSkin`` (``temp_skin``), ``tempCore`` (``temp_core``). An entry is ``{"dateTime",
"value"}``; ``value`` is an object (a number for core temperature). Daily entries are stamped by
their date; core temperature by its local ``dateTime`` minus the user's UTC offset. Units follow
the ``Accept-Language`` of the fetch (``en_US``: Fahrenheit). One `FitbitRecord` row per entry,
one `FitbitValue` row per mapped field.
"""

from __future__ import annotations

from schemas.vendors.fetched import FetchedRecord, FetchedValue

NAME = "fitbit"

LOCAL_STAMP_EXPECTED = "a local date-time YYYY-MM-DDTHH:MM:SS (or a YYYY-MM-DD date)"


class FitbitRecord(FetchedRecord):
    """One dated entry of a Fitbit summary."""


class FitbitValue(FetchedValue):
    """One mapped field of an entry."""
