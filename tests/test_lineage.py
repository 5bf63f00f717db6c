"""`biobridge lineage` on the demo's data (issue 13 item 4): a row, an object and a load, each in
text and JSON, against rows really loaded (pushed, fetched for a notification, quarantined)."""

from __future__ import annotations

import json

import pytest

from deployments.cli import main
from ops.lineage import LineageError, parse_target
from tests.pipeline import Pipeline
from tests.test_ingest import generic_body


def lineage(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["lineage", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_targets_are_told_apart() -> None:
    assert parse_target("123") == ("row", "123")
    assert parse_target("row:123") == ("row", "123")
    assert parse_target("load:7") == ("load", "7")
    assert parse_target("raw/oura/dt=2026-11-01/hour=09/x.json")[0] == "object"
    for bad in ("load:x", "yesterday", "s3://bucket/raw/x"):
        with pytest.raises(LineageError, match=r"e\.g\."):
            parse_target(bad)


def test_lineage_answers_the_three_questions_on_the_demo_data(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("BIOBRIDGE_TOKEN_ENCRYPTION_KEY", raising=False)
    assert main(["demo"]) == 0
    bad = pipeline.post("oura", generic_body("u_bad", resting_heart_rate="fast"))
    assert bad.status_code == 202
    assert pipeline.ingest().is_completed()
    capsys.readouterr()

    # A row fetched for a pointer notification: object, delivery, headers, notification, load.
    row_id, key, load_id, flow_run, version, delivery_id = pipeline.query(
        "SELECT e.id, e.source_key, e.load_id, l.flow_run_id, l.code_version, f.delivery_id "
        "FROM public.biometric_events AS e "
        "JOIN biobridge.fetched_documents AS d ON d.object_key = e.source_key "
        "JOIN biobridge.landed_files AS f ON f.object_key = e.source_key "
        "JOIN biobridge.loads AS l ON l.load_id = e.load_id ORDER BY e.id LIMIT 1"
    )[0]
    notification = pipeline.scalar(
        "SELECT notification_key FROM biobridge.fetched_documents WHERE object_key = $1", (key,)
    )
    kept = pipeline.store.get(key)[1]
    code, out, err = lineage(capsys, str(row_id))
    assert code == 0, err
    assert f"row {row_id}: " in out and key in out and notification in out
    assert f"delivery   {delivery_id}" in out
    assert f"/runs/flow-run/{flow_run}" in out and f"code       {version}" in out
    code, out, _ = lineage(capsys, f"row:{row_id}", "--json")
    answer = json.loads(out)
    assert answer["kind"] == "row" and answer["row"]["id"] == row_id
    assert answer["object"]["object_key"] == key and answer["object"]["state"] == "loaded"
    assert answer["delivery"]["delivery_id"] == delivery_id == kept.delivery_id
    assert answer["delivery"]["headers"] == kept.headers
    assert answer["pointer"]["fetched_for"]["notification_key"] == notification
    assert answer["load"]["load_id"] == load_id and answer["code_version"] == version
    assert answer["load"]["flow_run_url"] == f"http://127.0.0.1:4200/runs/flow-run/{flow_run}"

    # A pushed object: the headers the receiver kept, every row it produced.
    pushed = pipeline.scalar(
        "SELECT object_key FROM biobridge.landed_files WHERE vendor = 'apple_health' "
        "AND state = 'loaded' AND rows_loaded > 0 ORDER BY object_key LIMIT 1"
    )
    rows = pipeline.query(
        "SELECT id FROM public.biometric_events WHERE source_key = $1 ORDER BY id", (pushed,)
    )
    code, out, _ = lineage(capsys, pushed, "--json")
    answer = json.loads(out)
    assert answer["kind"] == "object" and answer["rows_total"] == len(rows) > 0
    assert sorted(r["id"] for r in answer["rows"]) == [r for (r,) in rows]
    assert answer["delivery"]["headers"] == pipeline.store.get(pushed)[1].headers
    assert answer["quarantine"] == []
    code, out, _ = lineage(capsys, pushed, "--limit", "1")
    assert code == 0 and "quarantine none" in out
    assert out.count("  row        ") == 1 and f"{len(rows) - 1} more" in out

    # The object with a bad record: its rows and its quarantine entry.
    quarantined = pipeline.scalar(
        "SELECT object_key FROM biobridge.quarantine ORDER BY quarantine_id DESC LIMIT 1"
    )
    code, out, _ = lineage(capsys, quarantined)
    assert code == 0 and f"object {quarantined}: oura, state loaded" in out
    assert "quarantine record 0:" in out and "resting_heart_rate" in out
    answer = json.loads(lineage(capsys, quarantined, "--json")[1])
    assert answer["quarantine"] and all(
        "resting_heart_rate" in q["field"] and q["record_index"] == 0 for q in answer["quarantine"]
    )

    # A load: its counts and its objects.
    settled = dict(
        pipeline.query(
            "SELECT state, count(*) FROM biobridge.landed_files WHERE load_id = $1 GROUP BY 1",
            (load_id,),
        )
    )
    code, out, _ = lineage(capsys, f"load:{load_id}")
    assert code == 0 and out.startswith(f"load {load_id} (")
    assert "counts     files_read" in out and f"/runs/flow-run/{flow_run}" in out
    answer = json.loads(lineage(capsys, f"load:{load_id}", "--json")[1])
    assert answer["kind"] == "load" and answer["objects_by_state"] == settled
    assert key in {o["object_key"] for o in answer["objects"]}

    # Asking for what is not there: one line with what to ask instead.
    code, _, err = lineage(capsys, "987654321")
    assert code == 2 and err.count("\n") == 1 and "load:987654321" in err
    code, _, err = lineage(capsys, "load:987654321")
    assert code == 2 and "no load 987654321" in err
    code, _, err = lineage(capsys, "raw/oura/dt=2026-01-01/hour=00/nothing.json")
    assert code == 2 and "not in the ledger" in err
