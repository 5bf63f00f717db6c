"""deployments/compose.yaml is a valid Compose file, and its names are the ones the code reads.

Validated against the Compose Specification's JSON schema (vendored: nothing is downloaded);
no container is started anywhere in the tests (tests/test_scale_out.py runs the same topology
as processes).
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest
import yaml

from landing.settings import Settings
from tasks.settings import PIPELINE_ONLY_ENV, PipelineSettings
from tasks.vendor_settings import VendorApiSettings

DEPLOYMENTS = Path(__file__).resolve().parents[1] / "deployments"
COMPOSE = yaml.safe_load((DEPLOYMENTS / "compose.yaml").read_text())
SCHEMA = json.loads((DEPLOYMENTS / "compose-spec" / "compose-spec.json").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]


def errors(document: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft7Validator(SCHEMA)
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in validator.iter_errors(document)
    ]


def env(service: str) -> dict[str, str]:
    """A service's environment, with `${VAR...}` interpolations replaced by a placeholder."""
    return {
        k: re.sub(r"\$\{[^}]*\}", "value", str(v))
        for k, v in SERVICES[service].get("environment", {}).items()
    }


def test_compose_file_validates_against_the_compose_specification() -> None:
    jsonschema.Draft7Validator.check_schema(SCHEMA)
    assert errors(COMPOSE) == []


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("services", "worker", "deploy", "replicas"), [3]),
        (("services", "receiver", "depends_on", "bucket", "condition"), "service_ready"),
        (("services", "edge", "port"), "8000:8000"),
    ],
)
def test_the_check_rejects_a_broken_file(path: tuple[str, ...], value: object) -> None:
    broken = copy.deepcopy(COMPOSE)
    node = broken
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    assert errors(broken) != []


def test_the_topology_is_the_one_the_issue_asks_for() -> None:
    assert {"postgres", "minio", "prefect-server", "receiver", "worker", "edge"} <= set(SERVICES)
    assert SERVICES["receiver"]["deploy"]["replicas"] >= 2
    assert SERVICES["worker"]["deploy"]["replicas"] >= 2
    assert SERVICES["worker"]["command"][:5] == [
        "prefect",
        "worker",
        "start",
        "--pool",
        "biobridge",
    ]
    prefect_db = env("prefect-server")["PREFECT_API_DATABASE_CONNECTION_URL"]
    assert prefect_db.startswith("postgresql+asyncpg://") and "@postgres:5432/" in prefect_db
    # One port in front of every receiver replica.
    assert SERVICES["edge"]["ports"] == ["8000:8000"]
    assert "dynamic a receiver 8000" in COMPOSE["configs"]["caddyfile"]["content"]
    # The image is built from uv.lock with runtime dependencies only.
    containerfile = (DEPLOYMENTS / "Containerfile").read_text()
    assert SERVICES["worker"]["build"]["dockerfile"] == "deployments/Containerfile"
    assert containerfile.count("uv sync --locked --no-dev") == 2


def test_every_biobridge_variable_is_a_setting_the_code_reads() -> None:
    read = {
        f"BIOBRIDGE_{name.upper()}"
        for model in (PipelineSettings, VendorApiSettings)
        for name in model.model_fields
    }
    read.add("BIOBRIDGE_CODE_DIR")  # deployments/prefect.yaml's pull step
    for service in SERVICES:
        unknown = {n for n in env(service) if n.startswith("BIOBRIDGE_")} - read
        assert unknown == set(), f"{service}: no setting reads {sorted(unknown)}"
    # The receivers read the receiver's settings only, and never see the database URL.
    receiver = {n for n in env("receiver") if n.startswith("BIOBRIDGE_")}
    assert receiver <= {f"BIOBRIDGE_{name.upper()}" for name in Settings.model_fields}
    assert not receiver & set(PIPELINE_ONLY_ENV)


def test_the_services_point_at_each_other_by_their_names() -> None:
    receiver, worker = env("receiver"), env("worker")
    # Workers read what receivers write.
    for name in ("BIOBRIDGE_LANDING_URL", "AWS_ENDPOINT_URL_S3", "AWS_REGION"):
        assert receiver[name] == worker[name], name
    bucket = urlsplit(worker["BIOBRIDGE_LANDING_URL"]).netloc
    assert SERVICES["bucket"]["command"][-1] == f"landing/{bucket}"
    assert urlsplit(worker["AWS_ENDPOINT_URL_S3"]).hostname == "minio"
    database = urlsplit(worker["BIOBRIDGE_DATABASE_URL"])
    assert database.hostname == "postgres" and database.path == "/biobridge"
    assert env("postgres")["POSTGRES_DB"] == "biobridge"
    api = urlsplit(worker["PREFECT_API_URL"])
    assert api.hostname == "prefect-server" and api.port == 4200
    assert "4200" in SERVICES["prefect-server"]["command"]
    assert env("deploy")["PREFECT_API_URL"] == worker["PREFECT_API_URL"]
    # No password is written in the file: each comes from the environment, required.
    text = (DEPLOYMENTS / "compose.yaml").read_text()
    for name in ("POSTGRES_PASSWORD", "MINIO_ROOT_PASSWORD"):
        assert f"${{{name}:?" in text
    assert not re.search(r"(?i)(password|secret)[A-Z_]*:\s*(?!\$\{)\S{6,}", text)
