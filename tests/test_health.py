"""`biobridge health` against a real pipeline: healthy after an ingest, and each failure named."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from deployments.cli import main
from tasks import runtime
from tests.helpers import backdate, free_port
from tests.pipeline import Pipeline
from tests.test_ingest import generic_body
from tests.test_verify import execute, land_at
from warehouse.ledger import record_discovered
from warehouse.postgres import connect


def health(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, object]]:
    capsys.readouterr()
    code = main(["health", "--json", *args])
    return code, json.loads(capsys.readouterr().out)


def test_healthy_after_a_clean_ingest(
    pipeline: Pipeline, capsys: pytest.CaptureFixture[str]
) -> None:
    assert pipeline.post("oura", generic_body("u_ok")).status_code == 202
    assert pipeline.ingest().is_completed()
    code, report = health(capsys)
    assert code == 0, report["problems"]
    assert report["database"]["reachable"] and report["store"]["ok"]  # type: ignore[index]
    # nothing acknowledged is left only in the receiver's log
    assert report["store"]["receiver_log"]["records"] == 0  # type: ignore[index]
    backlog, loads = report["backlog"], report["loads"]
    assert backlog["pending"] == 0 and backlog["undiscovered"] == 0  # type: ignore[index]
    assert loads["last_completed"]["load_id"] == 1 and loads["last_failed"] is None  # type: ignore[index]

    capsys.readouterr()
    assert main(["health"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("biobridge health: OK") and "last completed: 1" in text


def test_file_stuck_pending_past_the_threshold(
    pipeline: Pipeline, capsys: pytest.CaptureFixture[str]
) -> None:
    old = land_at(pipeline, "oura", generic_body("u_stuck"), datetime.now(UTC) - timedelta(hours=2))
    with connect(pipeline.db_url) as conn:
        assert record_discovered(conn, [old]) == 1
    code, report = health(capsys)
    assert code == 1
    assert report["backlog"]["pending"] == 1 and report["backlog"]["oldest_key"] == old  # type: ignore[index]
    assert any(old in p and "min ago" in p for p in report["problems"])  # type: ignore[attr-defined]
    # A looser threshold accepts it.
    assert health(capsys, "--max-pending-age", str(3 * 3600))[0] == 0


def test_undiscovered_landed_object_counts_in_the_backlog(
    pipeline: Pipeline, capsys: pytest.CaptureFixture[str]
) -> None:
    # Stamped 20 min ago by a receiver 20 min behind, behind the discovery cursor: health lists
    # the last day's partitions, not from the cursor, and ages it by when the store wrote it.
    late = land_at(
        pipeline, "garmin", generic_body("u_late"), datetime.now(UTC) - timedelta(minutes=20)
    )
    code, report = health(capsys)
    assert code == 0 and report["backlog"]["undiscovered"] == 1  # type: ignore[index]
    backdate(pipeline.store, late, datetime.now(UTC) - timedelta(minutes=20))
    code, report = health(capsys)
    assert code == 1
    assert report["backlog"]["undiscovered"] == 1 and report["backlog"]["oldest_key"] == late  # type: ignore[index]


def test_last_load_failed_is_reported_with_its_error(
    pipeline: Pipeline, capsys: pytest.CaptureFixture[str]
) -> None:
    execute(
        pipeline,
        "INSERT INTO biobridge.loads (status, finished_at, code_version, error) "
        "VALUES ('failed', now(), 'test', 'OperationalError: server closed the connection')",
    )
    code, report = health(capsys)
    assert code == 1
    assert any("server closed the connection" in p for p in report["problems"])  # type: ignore[attr-defined]


def test_postgres_down_is_reported_without_the_password(
    pipeline: Pipeline, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        "BIOBRIDGE_DATABASE_URL", f"postgresql://bb:s3cret-pw@127.0.0.1:{free_port()}/biobridge"
    )
    runtime.reset()
    capsys.readouterr()
    code = main(["health", "--json"])
    out = capsys.readouterr().out
    assert code == 1 and "s3cret-pw" not in out
    report = json.loads(out)
    assert report["database"]["reachable"] is False
    assert "bb:***@127.0.0.1" in report["database"]["database"]
    assert report["store"]["ok"] is True  # the store is checked on its own
    assert report["backlog"] is None
    assert main(["health"]) == 1
    assert "database  FAIL" in capsys.readouterr().out


def test_unreadable_store_is_reported(
    pipeline: Pipeline,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    not_a_folder = tmp_path / "landing-is-a-file"
    not_a_folder.write_text("")
    monkeypatch.setenv("BIOBRIDGE_LANDING_URL", not_a_folder.as_uri())
    runtime.reset()
    code, report = health(capsys)
    assert code == 1
    assert report["database"]["ok"] is True  # type: ignore[index]
    assert report["store"]["ok"] is False and "StoreUnavailable" in report["store"]["error"]  # type: ignore[index]
    assert any(p.startswith("store:") for p in report["problems"])  # type: ignore[attr-defined]


def test_health_reports_quarantine_and_says_what_it_does_not_check(
    pipeline: Pipeline, capsys: pytest.CaptureFixture[str]
) -> None:
    # issue 12 (5): health said OK and nothing about quarantines, nor about the old undiscovered
    # file verify found
    from tests.test_ingest import land_raw

    key = land_raw(pipeline, "oura", b"\x00 not json")
    assert pipeline.ingest().is_completed()
    _, report = health(capsys)
    assert report["quarantine"] == {"oura": 1}
    assert "biobridge verify" in str(report["not_checked"])
    capsys.readouterr()
    main(["health"])
    text = capsys.readouterr().out
    assert "quarantine      files with open entries: oura 1" in text
    assert "not checked" in text
    capsys.readouterr()
    assert main(["quarantine", "list"]) == 0
    listed = capsys.readouterr().out
    assert key in listed and "not valid JSON" in listed
    assert main(["quarantine", "show", key]) == 0
    assert "whole file" in capsys.readouterr().out
