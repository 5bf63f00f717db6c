"""The metric catalogue: every canonical metric name and the one unit it is stored in."""

from __future__ import annotations

import json
from collections.abc import Mapping
from importlib import resources
from types import MappingProxyType

CATALOGUE_FILE = "metric_catalogue.json"


def _load() -> dict[str, str]:
    text = resources.files(__package__).joinpath(CATALOGUE_FILE).read_text(encoding="utf-8")
    entries = json.loads(text)
    return {name: entry["unit"] for name, entry in entries.items()}


CATALOGUE: Mapping[str, str] = MappingProxyType(_load())
"""metric_type -> catalogue unit (e.g. ``"resting_heart_rate_bpm" -> "bpm"``)."""

UNITS: frozenset[str] = frozenset(CATALOGUE.values())


def unit_of(metric_type: str) -> str:
    """The catalogue unit of `metric_type`; raises KeyError naming the metric when unknown."""
    try:
        return CATALOGUE[metric_type]
    except KeyError:
        raise KeyError(
            f"metric_type {metric_type!r} is not in {CATALOGUE_FILE}: add it there first"
        ) from None
