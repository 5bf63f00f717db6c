"""Fixtures for flow tests: one Prefect harness per session, and a pipeline per test.

A pipeline is a fresh database (from tests.pg), a fresh landing folder or bucket, a live
receiver over real HTTP, and the environment the flow reads its settings from.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from landing.receiver import create_app
from landing.settings import Settings
from landing.store import ObjectStore, open_store
from tests.helpers import live_server


@pytest.fixture(scope="session")
def prefect_harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A temporary Prefect API for the whole session (starting one costs ~15 s)."""
    home = tmp_path_factory.mktemp("prefect-home")
    os.environ.setdefault("PREFECT_HOME", str(home))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("PREFECT_UI_STATIC_DIRECTORY", str(home / "ui"))
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@dataclass
class Pipeline:
    """Everything one flow test touches, wired the way production wires it."""

    settings: Settings
    store: ObjectStore
    receiver_url: str
    db_url: str

    def post(self, route: str, body: bytes, **headers: str) -> httpx.Response:
        """POST a webhook through real HTTP."""
        hdrs = {"content-type": "application/json", **headers}
        return httpx.post(
            f"{self.receiver_url}/webhooks/{route}", content=body, headers=hdrs, timeout=30
        )

    def ingest(self, **params: Any) -> Any:
        """Run the ingest flow once in this process; returns its final Prefect state."""
        from flows.ingest import IngestParams, ingest

        return ingest(IngestParams(**params), return_state=True)

    def query(self, sql: str, params: tuple[Any, ...] | None = None) -> list[tuple[Any, ...]]:
        """Rows of one SQL statement against the test database."""
        from warehouse.postgres import connect

        with connect(self.db_url) as conn, conn.cursor() as cur:
            cur.execute(sql, params)
            return list(cur.fetchall())

    def scalar(self, sql: str, params: tuple[Any, ...] | None = None) -> Any:
        """The single value of a one-row, one-column query."""
        return self.query(sql, params)[0][0]


def make_pipeline(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, db_url: str, landing_url: str | None
) -> Iterator[Pipeline]:
    """Point the settings at this test's database and store and start a receiver."""
    from tasks import runtime

    env = {
        "BIOBRIDGE_DATA_DIR": str(tmp_path / "data"),
        "BIOBRIDGE_DATABASE_URL": db_url,
        "BIOBRIDGE_RETRY_BACKOFF_S": "0.05",
        "BIOBRIDGE_IO_RETRIES": "2",
    }
    if landing_url:
        env["BIOBRIDGE_LANDING_URL"] = landing_url
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    runtime.reset()
    settings = Settings()
    store = open_store(settings.landing_location(), settings)
    with live_server(create_app(settings, store)) as url:
        yield Pipeline(settings=settings, store=store, receiver_url=url, db_url=db_url)
    runtime.reset()


@pytest.fixture
def pipeline(
    prefect_harness: None, pg_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[Pipeline]:
    """A pipeline on a local landing folder."""
    yield from make_pipeline(monkeypatch, tmp_path, pg_url, None)


@pytest.fixture
def s3_pipeline(
    prefect_harness: None,
    pg_url: str,
    bucket: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> Iterator[Pipeline]:
    """A pipeline landing in a bucket of the test S3 endpoint."""
    yield from make_pipeline(monkeypatch, tmp_path, pg_url, f"s3://{bucket}/landing")
