"""Polar AccessLink v3 fetched documents (spec section 8).

``exercise`` (``GET /v3/exercises/{id}``; ``/v3/exercises`` gives a list): stamped at its
device-local ``start-time`` minus ``start-time-utc-offset`` minutes; ``duration`` is an ISO 8601
duration (``PT1H7M45.5S``). ``sleep`` (``GET /v3/users/sleep/{date}``; ``/v3/users/sleep`` gives
``{"nights": [...]}``): stamped at ``sleep_start_time``. One `PolarRecord` row per document, one
`PolarValue` row per mapped field.
"""

from __future__ import annotations

from schemas.vendors.fetched import FetchedRecord, FetchedValue

NAME = "polar"

LOCAL_STAMP_EXPECTED = "a device-local date-time YYYY-MM-DDTHH:MM:SS"
DURATION_EXPECTED = "an ISO 8601 duration such as PT1H7M45S or PT45M12.5S"


class PolarRecord(FetchedRecord):
    """One exercise or one night."""


class PolarValue(FetchedValue):
    """One mapped field; an unreadable ISO duration has a null value and fails."""
