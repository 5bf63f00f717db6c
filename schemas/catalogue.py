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


def _load_bounds() -> dict[str, tuple[float, float]]:
    text = resources.files(__package__).joinpath(CATALOGUE_FILE).read_text(encoding="utf-8")
    return {
        name: (float(entry["min"]), float(entry["max"])) for name, entry in json.loads(text).items()
    }


BOUNDS: Mapping[str, tuple[float, float]] = MappingProxyType(_load_bounds())
"""metric_type -> (min, max), inclusive, in the catalogue unit: what is physically plausible
(a heart rate of -5 bpm or a readiness score of 250 is a sender bug, quarantined)."""


def unit_of(metric_type: str) -> str:
    """The catalogue unit of `metric_type`; raises KeyError naming the metric when unknown."""
    try:
        return CATALOGUE[metric_type]
    except KeyError:
        raise KeyError(
            f"metric_type {metric_type!r} is not in {CATALOGUE_FILE}: add it there first"
        ) from None
