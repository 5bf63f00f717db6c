"""The served deployment and prefect.yaml agree, and the run form opens with its fields shown
(issue 12, Why 6: deployment named like a mode, tags missing, params = None)."""

from __future__ import annotations

from pathlib import Path

import yaml

from deployments.stack import DEPLOYMENT_NAME, DEPLOYMENT_TAGS, FLOW_NAME

PREFECT_YAML = Path(__file__).parents[1] / "deployments" / "prefect.yaml"


def test_prefect_yaml_and_the_served_deployment_agree() -> None:
    [deployment] = yaml.safe_load(PREFECT_YAML.read_text())["deployments"]
    assert deployment["name"] == DEPLOYMENT_NAME
    assert DEPLOYMENT_NAME not in ("scheduled", "backfill", "replay")
    assert deployment["tags"] == DEPLOYMENT_TAGS
    assert deployment["entrypoint"] == "flows/ingest.py:ingest"
    from flows.ingest import ingest

    assert ingest.name == FLOW_NAME


def test_the_run_form_opens_with_every_field_and_its_default() -> None:
    from prefect.utilities.callables import parameter_schema

    from flows.ingest import ingest

    schema = parameter_schema(ingest).model_dump_for_openapi()
    params = schema["properties"]["params"]
    assert params.get("default") not in (None, {}), params
    assert params["default"]["mode"] == "scheduled" and params["default"]["batch_files"] == 2000
    fields = schema["definitions"]["IngestParams"]["properties"]
    assert {"mode", "vendors", "received_from", "received_until", "replay_states"} <= set(fields)
    assert all(f.get("description") or f.get("title") for f in fields.values())
