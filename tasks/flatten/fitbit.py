"""Flatten Fitbit Web API fetched summaries (spec section 6), and tell what a Fitbit body is.

A body is ``{"<key>": [entry, ...]}``; each entry ``{"dateTime", "value"}`` is one record of
``context["user_id"]``. Units follow the ``Accept-Language`` the fetch sent
(``context["accept_language"]``: ``en_US`` gives Fahrenheit, anything else or nothing Celsius).
Core temperature is stamped at its local ``dateTime`` minus ``context["utc_offset_seconds"]``
(default 0); the daily summaries at their date.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

from schemas.vendors.fetched import DATE_EXPECTED
from schemas.vendors.fitbit import LOCAL_STAMP_EXPECTED, FitbitRecord, FitbitValue
from tasks.flatten.documents import (
    CONTEXT_USER,
    DocumentBatch,
    DocumentSpec,
    build_mapping,
    context_user,
    element_issue,
    finish,
    flatten_each,
    walk_fields,
)
from tasks.flatten.issues import (
    file_issue,
)
from tasks.flatten.mapping import (
    F_DELTA_TO_C,
    F_TO_C,
    Target,
)
from tasks.flatten.model import (
    NOTIFICATION,
    POINTER,
    Flattened,
    Flattener,
    FlattenInput,
)

NAME = "fitbit"
EXPECTED = (
    "a list of pointers [{collectionType, date, ownerId, ...}] or a fetched summary "
    "{activities-heart|hrv|tempSkin|tempCore: [...]}"
)
"""What `detect` recognises (the reason of an unrecognised body)."""

USER_FIX = "the fetch stage must pass the notification's ownerId as context user_id"
IMPERIAL_LANGUAGE = "en_US"
"""The only ``Accept-Language`` for which Fitbit answers in US units (spec section 6)."""
IMPERIAL = "@en_US"
"""Suffix of a spec key whose units are the imperial ones."""
OFFSET_FIELD = "context.utc_offset_seconds"

BODY_KEYS: Mapping[str, str] = MappingProxyType(
    {
        "activities-heart": "activities-heart",
        "hrv": "hrv",
        "temp_skin": "tempSkin",
        "temp_core": "tempCore",
    }
)
"""Resource -> the key of its entries in the fetched body."""

ALIASES: Mapping[str, str] = MappingProxyType({"tempSkin": "temp_skin", "tempCore": "temp_core"})
"""The spec also names the temperature resources by their body key: same flattener."""

IGNORED_BODY_KEYS = frozenset({"activities-heart-intraday"})
"""Other keys Fitbit sends beside the entries (intraday detail): not flattened, not drift."""

LOCAL_TIME_RESOURCES = frozenset({"temp_core"})
"""Resources stamped in the user's local time (the others carry a date)."""


def _daily(fields: dict[str, Target], ignored: frozenset[str] = frozenset()) -> DocumentSpec:
    return DocumentSpec(
        stamp="dateTime", expected_stamp=DATE_EXPECTED, fields=fields, ignored=ignored
    )


SPECS: Mapping[str, DocumentSpec] = MappingProxyType(
    {
        "activities-heart": _daily(
            {"value.restingHeartRate": Target("resting_heart_rate_bpm")},
            frozenset({"value.customHeartRateZones", "value.heartRateZones"}),
        ),
        "hrv": _daily(
            {
                "value.dailyRmssd": Target("sleep_avg_hrv_rmssd_ms"),
                "value.deepRmssd": Target("sleep_deep_hrv_rmssd_ms"),
            },
            frozenset({"minutes"}),
        ),
        "temp_skin": _daily(
            {"value.nightlyRelative": Target("body_temperature_delta_c")},
            frozenset({"logType"}),
        ),
        "temp_skin" + IMPERIAL: _daily(
            {"value.nightlyRelative": Target("body_temperature_delta_c", F_DELTA_TO_C)},
            frozenset({"logType"}),
        ),
        "temp_core": DocumentSpec(
            stamp="dateTime",
            expected_stamp=LOCAL_STAMP_EXPECTED,
            fields={"value": Target("body_temperature_c")},
        ),
        "temp_core" + IMPERIAL: DocumentSpec(
            stamp="dateTime",
            expected_stamp=LOCAL_STAMP_EXPECTED,
            fields={"value": Target("body_temperature_c", F_TO_C)},
        ),
    }
)
"""Spec key (resource, ``+ IMPERIAL`` where US units differ) -> how its entries map."""

_IDS, MAPPING = build_mapping(SPECS)
MAP_ID: Mapping[str, Mapping[str, int]] = MappingProxyType(_IDS)


def is_imperial(context: Mapping[str, Any]) -> bool:
    """Whether the fetch asked for US units (``Accept-Language: en_US``)."""
    language = context.get("accept_language")
    return type(language) is str and language.strip() == IMPERIAL_LANGUAGE


def flatten_batch(items: Sequence[FlattenInput]) -> Flattened:
    """Flatten Fitbit summaries: one record per dated entry, one value per field."""
    batch = flatten_each(items, _walk)
    return finish(batch, record_model=FitbitRecord, value_model=FitbitValue, mapping=MAPPING)


RESOURCES: Mapping[str, Flattener | None] = MappingProxyType(
    {**dict.fromkeys([*BODY_KEYS, *ALIASES], flatten_batch), NOTIFICATION: POINTER}
)
"""Resource -> its batch flattener; a notification only points at data (POINTER: no rows)."""


def _walk(batch: DocumentBatch, item: FlattenInput) -> None:
    entries = _entries(batch, item)
    if entries is None:
        return
    user = context_user(batch, item, USER_FIX)
    if user is None:
        return
    resource = ALIASES.get(item.resource, item.resource)
    key = BODY_KEYS[resource]
    spec_key = resource
    if is_imperial(item.context) and spec_key + IMPERIAL in SPECS:
        spec_key += IMPERIAL
    spec = SPECS[spec_key]
    local_offset = None
    if resource in LOCAL_TIME_RESOURCES:
        offset = item.context.get("utc_offset_seconds")
        local_offset = (OFFSET_FIELD, 0 if offset is None else offset)
    for record_index, entry in enumerate(entries):
        path = f"{key}[{record_index}]"
        if type(entry) is not dict:
            outcome = "the record was quarantined"
            batch.issues.append(
                element_issue(item, record_index, path, "an object", entry, outcome)
            )
            continue
        record = batch.add_document_record(
            item,
            record_index=record_index,
            path=path,
            user=user,
            user_field=CONTEXT_USER,
            stamp_field=spec.stamp,
            stamp=entry.get(spec.stamp),
            expected_stamp=spec.expected_stamp,
            local_offset=local_offset,
        )
        walk_fields(
            batch,
            item,
            spec=spec,
            ids=MAP_ID[spec_key],
            record=record,
            record_index=record_index,
            path=path,
            element=entry,
        )


def _entries(batch: DocumentBatch, item: FlattenInput) -> list[Any] | None:
    """The body's entries under the resource's key (an issue when the body is not that)."""
    key = BODY_KEYS[ALIASES.get(item.resource, item.resource)]
    payload = item.payload
    fix = f"only Fitbit {item.resource} summaries belong here"
    if type(payload) is not dict or key not in payload:
        expected = f'an object {{"{key}": [...]}}'
        batch.issues.append(file_issue(item.file_no, key, expected, payload, fix))
        return None
    for other in payload.keys() - {key} - IGNORED_BODY_KEYS:
        batch.drift[f"{item.vendor}:{item.resource}:{other}"] += 1
    entries = payload[key]
    if entries is None:
        return []
    if type(entries) is not list:
        batch.issues.append(file_issue(item.file_no, key, "a list of entries", entries, fix))
        return None
    return entries


def detect(payload: Any, headers: Mapping[str, str]) -> str | None:
    """The resource of a Fitbit body: a notification list, or a fetched summary by its key;
    None when it is neither."""
    if type(payload) is list and all(
        type(item) is dict and "collectionType" in item for item in payload
    ):
        return NOTIFICATION
    if type(payload) is dict:
        for resource, key in BODY_KEYS.items():
            if type(payload.get(key)) is list:
                return resource
    return None
