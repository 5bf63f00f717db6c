"""The quarantine issues flatteners report: a bad value, stamp, user id or whole file."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tasks.flatten.model import Issue
from tasks.flatten.timestamps import stamp_hint
from tasks.flatten.values import excerpt


def value_issue(row: Mapping[str, Any], field_name: str) -> Issue:
    """The issue of a value row (``raw``, ``value``) that is present but not a finite number."""
    file_no, record_index, raw, value = (
        row["file_no"],
        row["record_index"],
        row["raw"],
        row["value"],
    )
    if value is None:
        expected = "a number or numeric string"
        found = raw if raw is not None else "null"
        reason = (
            f"{field_name}: expected {expected}, found {found}; this value is quarantined, "
            "the record's other values were kept"
        )
    else:
        expected = "a finite number"
        found = raw if raw is not None else repr(value)
        reason = (
            f"{field_name}: expected {expected}, found {found} (NaN, infinity or beyond the "
            "float range); this value is quarantined, the record's other values were kept"
        )
    return Issue(file_no, record_index, field_name, reason, expected, found)


def stamp_issue(
    file_no: int, record_index: int | None, field_name: str, stamp: Any, expected: str
) -> Issue:
    """The issue of a record whose stamp is missing or unusable."""
    found = excerpt(stamp)
    reason = f"{field_name}: expected {expected}, found {found}{stamp_hint(stamp)}; " + (
        "the file was rejected" if record_index is None else "the record was quarantined"
    )
    return Issue(file_no, record_index, field_name, reason, expected, found)


def user_issue(file_no: int, record_index: int | None, field_name: str, user: Any) -> Issue:
    """The issue of a record whose user id is missing or unusable."""
    expected = "a non-blank user id (string or integer, at most 256 characters)"
    found = excerpt(user)
    reason = f"{field_name}: expected {expected}, found {found}; " + (
        "the file was rejected" if record_index is None else "the record was quarantined"
    )
    return Issue(file_no, record_index, field_name, reason, expected, found)


def file_issue(file_no: int, field_name: str, expected: str, found: Any, fix: str) -> Issue:
    """A whole-file issue (the body as a whole is unusable)."""
    found_text = excerpt(found)
    reason = f"{field_name}: expected {expected}, found {found_text}; the file was rejected: {fix}"
    return Issue(file_no, None, field_name, reason, expected, found_text)
