"""The fetch stage's vendor registry: one line per pointer vendor (`POINTER_VENDORS` order)."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from tasks.fetch import fitbit, oura, polar, whoop, withings
from tasks.fetch.model import VendorFetch

_MODULES: tuple[VendorFetch, ...] = (oura, whoop, fitbit, withings, polar)

REGISTRY: Mapping[str, VendorFetch] = MappingProxyType({m.NAME: m for m in _MODULES})
"""Pointer vendor -> its fetch module."""
