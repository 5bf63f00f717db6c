"""The generic internal shape (spec section 11), posted to /webhooks/oura and /apple_health.

Body: ``{"event_type", "user_id": str | int, "timestamp": ISO 8601 with offset or a date,
"data": {key: number, ...}}``. One `GenericEvent` row per body (record_index 0, path ``""``);
one `GenericValue` row per mapped `data` key. A body whose event fails is rejected whole.
"""

from __future__ import annotations

from schemas.vendors.records import RecordFrame, ValueFrame

NAME = "generic"

TIMESTAMP_EXPECTED = "an ISO 8601 date-time with a UTC offset (or Z), a YYYY-MM-DD date, or epoch s"


class GenericEvent(RecordFrame):
    """The body's user and stamp: `user_id` and `timestamp`."""


class GenericValue(ValueFrame):
    """One `data` key whose name maps to a catalogue metric."""
