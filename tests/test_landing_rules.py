"""Rules of the landing package: the vendor registry, the header allow-list, its imports."""

from __future__ import annotations

import subprocess
import sys

import pytest

from landing.headers import COMMON_HEADERS, SECRET_HINTS, kept_headers
from landing.keys import EXTENSIONS, VENDORS
from landing.vendors import REGISTRY
from landing.vendors.apple_health import context as apple_context


def test_registry_has_exactly_the_routed_vendors_each_with_the_same_names() -> None:
    assert list(REGISTRY) == list(VENDORS)
    for name, vendor in REGISTRY.items():
        assert vendor.NAME == name
        assert "json" in vendor.FORMATS and vendor.FORMATS <= set(EXTENSIONS)
        assert callable(vendor.delivery_id) and callable(vendor.verify)


def test_allow_listed_headers_never_name_a_secret() -> None:
    names = set(COMMON_HEADERS).union(*(v.HEADERS for v in REGISTRY.values()))
    assert [n for n in names if any(hint in n for hint in SECRET_HINTS)] == []
    signatures = [n for n in names if "signature" in n.replace("signature-timestamp", "")]
    assert signatures == [] and all(n == n.lower() for n in names)


def test_kept_headers_are_allow_listed_truncated_and_bounded() -> None:
    headers = {
        "content-type": "application/json",
        "authorization": "Bearer x",
        "x-oura-signature": "ABC",
        "user-agent": "u" * 10_000,
        "x-request-id": "\u00ff" * 1000,
        "x-oura-timestamp": "1",
    }
    kept = kept_headers(headers, {"x-oura-timestamp", "x-client-secret"})
    assert set(kept) <= {"content-type", "user-agent", "x-request-id", "x-oura-timestamp"}
    assert kept["content-type"] == "application/json" and len(kept["user-agent"]) == 200
    assert "x-client-secret" not in kept


@pytest.mark.parametrize(
    ("headers", "query", "expected"),
    [
        ({}, {}, {}),
        ({"x-user-id": "athlete_elite_001"}, {}, {"user_id": "athlete_elite_001"}),
        ({}, {"user_id": "a.b@c:d+e-f"}, {"user_id": "a.b@c:d+e-f"}),
        ({"x-user-id": "same"}, {"user_id": "same"}, {"user_id": "same"}),
    ],
)
def test_apple_health_user_id(
    headers: dict[str, str], query: dict[str, str], expected: dict[str, str]
) -> None:
    assert apple_context(headers, query) == expected


@pytest.mark.parametrize("bad", ["", "a b", "a/b", "é", "x" * 129, "a\nb", "<script>"])
def test_apple_health_user_id_rejects(bad: str) -> None:
    with pytest.raises(ValueError, match="user id"):
        apple_context({"x-user-id": bad}, {})


def test_landing_never_imports_the_etl_side() -> None:
    code = (
        "import sys, landing.server, landing.s3_store, landing.local_store;"
        "print(sorted({m.split('.')[0] for m in sys.modules}"
        " & {'prefect', 'polars', 'pandera', 'pyarrow', 'flows', 'tasks', 'schemas'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
