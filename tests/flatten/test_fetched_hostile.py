"""The pointer vendors' flatteners never crash: examples with any leaf replaced by any JSON value,
and arbitrary JSON, give rows that pass the canonical contract or issues, never an exception."""

from __future__ import annotations

import json
from typing import Any

import hypothesis
import pytest
from hypothesis import strategies as st

from schemas.canonical import CanonicalRow
from tasks.flatten import FlattenInput, flatten_many
from tests.flatten.fetched import example_payload, examples_of

JSON_LEAF = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["", "12", " -3.5 ", "1e400", "PT1H", "2025-07-28", "2025-07-28T10:00:00"]),
)
JSON_ANY = st.recursive(
    JSON_LEAF,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)
CONTEXTS = st.sampled_from(
    [
        {},
        {"user_id": "u1"},
        {"user_id": 5, "accept_language": "en_US", "utc_offset_seconds": "x"},
        {"user_id": "a\x00b", "utc_offset_seconds": 10**12},
        {"user_id": "u1", "accept_language": ["en_US"], "utc_offset_seconds": -3600},
    ]
)


def _documents() -> list[tuple[str, str, Any]]:
    found = []
    for vendor in ("oura", "whoop", "fitbit", "withings", "polar"):
        for path in examples_of(vendor):
            expected = json.loads(path.read_text())
            payload = example_payload(expected)
            if expected["row_count"]:
                found.append((vendor, expected["resource"], payload))
    return found


DOCUMENTS = _documents()


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    paths = [prefix]
    if isinstance(value, dict):
        for key, inner in value.items():
            paths += _paths(inner, (*prefix, key))
    elif isinstance(value, list):
        for n, inner in enumerate(value):
            paths += _paths(inner, (*prefix, n))
    return paths


def _replaced(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    copy = dict(value) if isinstance(value, dict) else list(value)
    copy[path[0]] = _replaced(value[path[0]], path[1:], new)
    return copy


def _check(vendor: str, resource: str, payload: Any, context: dict[str, Any]) -> None:
    result = flatten_many([FlattenInput(0, vendor, resource, payload, context)])
    CanonicalRow.validate(result.rows)
    for issue in result.issues:
        assert issue.reason and issue.field and len(issue.found) <= 200


@pytest.mark.parametrize(("vendor", "resource", "document"), DOCUMENTS, ids=lambda x: str(x)[:20])
@hypothesis.settings(max_examples=25, deadline=None, derandomize=True)
@hypothesis.given(data=st.data(), context=CONTEXTS)
def test_any_leaf_replaced_by_any_value(
    vendor: str, resource: str, document: Any, data: st.DataObject, context: dict[str, Any]
) -> None:
    paths = _paths(document)
    path = data.draw(st.sampled_from(paths))
    mutated = _replaced(document, path, data.draw(JSON_ANY))
    _check(vendor, resource, mutated, context)
    _check(
        vendor, resource, {"data": [mutated], "records": [mutated], "nights": [mutated]}, context
    )


@pytest.mark.parametrize(
    ("vendor", "resource"), sorted({(vendor, resource) for vendor, resource, _ in DOCUMENTS})
)
@hypothesis.settings(max_examples=25, deadline=None, derandomize=True)
@hypothesis.given(payload=JSON_ANY, context=CONTEXTS)
def test_arbitrary_json(vendor: str, resource: str, payload: Any, context: dict[str, Any]) -> None:
    _check(vendor, resource, payload, context)
