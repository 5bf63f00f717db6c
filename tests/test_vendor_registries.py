"""Every vendor list is the landing registry or pinned to it: one registry line per layer."""

from __future__ import annotations

from typing import get_args

from landing import vendors as landing_vendors
from landing.keys import VENDORS
from schemas import vendors as schema_vendors
from schemas.canonical import GENERIC_DEVICE_TYPE, VENDOR_DEVICE_TYPES
from tasks import flatten


def test_vendors_are_the_landing_registry() -> None:
    assert VENDORS == tuple(landing_vendors.REGISTRY)
    assert len(set(VENDORS)) == len(VENDORS)


def test_flatten_registry_has_every_vendor_under_its_name() -> None:
    assert list(flatten.REGISTRY) == list(VENDORS)
    for name, module in flatten.REGISTRY.items():
        assert module.NAME == name
        assert module.RESOURCES, name
        assert module.EXPECTED, name


def test_schema_registry_has_every_vendor_under_its_name() -> None:
    assert list(schema_vendors.REGISTRY) == list(VENDORS)
    for name, module in schema_vendors.REGISTRY.items():
        assert module is None or module.NAME == name


def test_every_flattened_vendor_has_its_payload_models() -> None:
    flattened = {
        vendor
        for (vendor, resource), flattener in flatten.FLATTENERS.items()
        if flattener is not flatten.POINTER and resource != "generic"
    }
    assert flattened <= {v for v, module in schema_vendors.REGISTRY.items() if module is not None}


def test_device_types_are_the_vendors() -> None:
    assert (*VENDOR_DEVICE_TYPES, GENERIC_DEVICE_TYPE) == VENDORS


def test_ingest_parameters_accept_exactly_the_vendors() -> None:
    from flows.ingest import IngestParams

    schema = IngestParams.model_json_schema()
    assert schema["properties"]["vendors"]["items"]["enum"] == list(VENDORS)
    assert get_args(IngestParams.model_fields["vendors"].annotation)
