"""The accounting check against real flow runs: clean after an ingest, and each loss named."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pytest

from deployments.cli import main
from landing.keys import new_key
from ops.verify import VerifyReport, verify
from tests.helpers import backdate, land
from tests.pipeline import Pipeline
from tests.test_ingest import generic_body, land_raw
from warehouse.postgres import connect


def run_verify(p: Pipeline, **kwargs: object) -> VerifyReport:
    with connect(p.db_url) as conn:
        return verify(conn, p.store, **kwargs)  # type: ignore[arg-type]


def land_at(p: Pipeline, vendor: str, body: bytes, at: datetime) -> str:
    """Put a body in the store as if the receiver had landed it at `at`."""
    return land(p.store, vendor, body, at=at)


def execute(p: Pipeline, sql: str, params: tuple[object, ...] | None = None) -> list[tuple]:
    """Run one statement and commit it (`Pipeline.query` does not commit)."""
    with connect(p.db_url) as conn, conn.cursor() as cur:
        cur.execute(sql, params)
        rows = list(cur.fetchall()) if cur.description else []
        conn.commit()
    return rows


def kinds(report: VerifyReport) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for d in report.discrepancies:
        out.setdefault(d.kind, set()).add(d.key)
    return out


@pytest.fixture
def loaded(pipeline: Pipeline) -> Pipeline:
    """Five files loaded, one redelivered with a corrected value, one with a bad record, one
    not JSON (quarantined); a legacy row of the old system."""
    for i in range(5):
        assert pipeline.post("oura", generic_body(f"u_{i}")).status_code == 202
    assert (
        pipeline.post("oura", generic_body("u_bad", resting_heart_rate="fast")).status_code == 202
    )
    land_raw(pipeline, "garmin", b"{not json")
    assert pipeline.ingest().is_completed()
    assert pipeline.post("oura", generic_body("u_0", readiness_score=99)).status_code == 202
    assert pipeline.ingest().is_completed()
    execute(
        pipeline,
        'INSERT INTO biometric_events (user_id, device_type, metric_type, value, "timestamp") '
        "VALUES ('old_user', 'oura', 'hrv', 40, '2024-01-01T00:00:00Z')",
    )
    return pipeline


def test_clean_ingest_verifies_with_superseded_and_legacy_rows_counted(loaded: Pipeline) -> None:
    report = run_verify(loaded)
    assert report.ok, [str(d) for d in report.discrepancies]
    assert report.objects_listed == 8
    assert report.ledger_states == {"loaded": 7, "quarantined": 1}
    # 6 clean files x 7 rows, the bad-value file's 6; the redelivery replaced u_0's 7 rows.
    assert report.files_checked == 7
    assert report.rows_loaded_ledger == report.rows_reflattened == 48
    assert (report.keys_present, report.keys_superseded, report.keys_lost) == (41, 7, 0)
    assert report.legacy_rows == 1
    assert report.duplicate_keys == 0

    assert main(["verify"]) == 0
    bounded = run_verify(loaded, received_from=datetime.now(UTC) - timedelta(hours=1))
    assert bounded.ok and bounded.files_checked == 7 and bounded.legacy_rows is None
    assert run_verify(loaded, vendors=["garmin"]).ledger_states == {"quarantined": 1}


def test_deleted_row_is_a_missing_row_of_its_file(
    loaded: Pipeline, capsys: pytest.CaptureFixture[str]
) -> None:
    (key,) = execute(
        loaded,
        "DELETE FROM biometric_events WHERE id = (SELECT min(id) FROM biometric_events "
        "WHERE user_id = 'u_3') RETURNING source_key",
    )[0]
    report = run_verify(loaded)
    assert kinds(report) == {"missing_rows": {key}}
    assert report.keys_lost == 1
    assert "1 measurement(s)" in report.discrepancies[0].detail

    capsys.readouterr()
    assert main(["verify"]) == 1
    out = capsys.readouterr().out
    assert "FAILED: 1 discrepancies (1 missing_rows)" in out and key in out


def test_row_from_no_object_is_an_orphan(loaded: Pipeline) -> None:
    fake = new_key("oura", datetime.now(UTC) - timedelta(minutes=1))
    load_id = loaded.scalar("SELECT max(load_id) FROM biobridge.loads")
    execute(
        loaded,
        'INSERT INTO biometric_events (user_id, device_type, metric_type, value, "timestamp", '
        "received_at, source_key, load_id) VALUES ('ghost', 'oura', 'hrv', 1, now(), "
        "now() - interval '1 minute', $1, $2)",
        (fake, load_id),
    )
    report = run_verify(loaded)
    assert kinds(report) == {"orphan_row": {fake}}
    assert report.rows_without_lineage == 1


def test_row_whose_delivery_is_not_its_files_is_named(loaded: Pipeline) -> None:
    (key,) = execute(
        loaded,
        "UPDATE biometric_events SET delivery_seq = delivery_seq + 1000000 WHERE id = "
        "(SELECT min(id) FROM biometric_events WHERE user_id = 'u_3') RETURNING source_key",
    )[0]
    report = run_verify(loaded)
    assert kinds(report) == {"delivery_mismatch": {key}}
    assert report.rows_without_lineage == 1


def test_row_without_a_load_record_is_named(loaded: Pipeline) -> None:
    (key,) = execute(
        loaded,
        "UPDATE biometric_events SET load_id = 999999 WHERE id = "
        "(SELECT min(id) FROM biometric_events WHERE user_id = 'u_2') RETURNING source_key",
    )[0]
    assert kinds(run_verify(loaded)) == {"no_load_record": {key}}


def test_object_missing_from_the_store_is_named(loaded: Pipeline) -> None:
    key = loaded.scalar("SELECT source_key FROM biometric_events WHERE user_id = 'u_4' LIMIT 1")
    loaded.store.delete(key)
    report = run_verify(loaded)
    assert kinds(report) == {"missing_object": {key}}
    assert report.files_checked == 6  # its rows cannot be re-derived without the body


def test_old_undiscovered_object_is_a_discrepancy_and_a_recent_one_is_not(
    pipeline: Pipeline,
) -> None:
    now = datetime.now(UTC)
    old = land_at(pipeline, "oura", generic_body("u_late"), now - timedelta(minutes=30))
    backdate(pipeline.store, old, now - timedelta(minutes=30))
    land_at(pipeline, "oura", generic_body("u_new"), now - timedelta(minutes=1))
    # Stamped 30 min ago by a receiver whose clock is behind, but written just now: not late.
    land_at(pipeline, "oura", generic_body("u_skewed"), now - timedelta(minutes=30))
    report = run_verify(pipeline)
    assert kinds(report) == {"undiscovered": {old}}
    assert report.undiscovered_recent == 2
    assert report.undiscovered_oldest_age_s is not None
    assert report.undiscovered_oldest_age_s >= 30 * 60
    assert "not in the ledger" in report.discrepancies[0].detail


def test_quarantined_file_without_an_open_entry_is_named(loaded: Pipeline) -> None:
    key = loaded.scalar(
        "SELECT object_key FROM biobridge.landed_files WHERE state = 'quarantined' LIMIT 1"
    )
    execute(
        loaded, "UPDATE biobridge.quarantine SET replayed_at = now() WHERE object_key = $1", (key,)
    )
    assert kinds(run_verify(loaded)) == {"quarantine_missing": {key}}


def test_pending_file_outside_the_queue_and_settled_file_inside_it_are_named(
    loaded: Pipeline,
) -> None:
    lost, settled = (
        row[0]
        for row in execute(
            loaded,
            "SELECT object_key FROM biobridge.landed_files WHERE state = 'loaded' "
            "ORDER BY object_key LIMIT 2",
        )
    )
    execute(
        loaded, "UPDATE biobridge.landed_files SET state = 'pending' WHERE object_key = $1", (lost,)
    )
    execute(
        loaded,
        "INSERT INTO biobridge.pending_files SELECT object_key, vendor, received_at, delivery_seq, "
        "true FROM biobridge.landed_files WHERE object_key = $1",
        (settled,),
    )
    report = run_verify(loaded)
    assert kinds(report) == {"queue_mismatch": {lost, settled}}
    details = {d.key: d.detail for d in report.discrepancies}
    assert "no run will claim it" in details[lost]
    assert "loaded in the ledger but queued" in details[settled]


def test_bodies_acknowledged_but_only_in_the_receivers_log_are_counted_and_named_when_stuck(
    pipeline: Pipeline,
) -> None:
    """A local store's receiver acknowledges once a body is in its log: verify counts what is
    not an object yet, and names it once older than the settle window plus grace."""
    from landing import commit_log
    from landing.local_store import LocalStore

    store = pipeline.store
    assert isinstance(store, LocalStore)
    now = datetime.now(UTC)
    records = []
    for at in (now - timedelta(seconds=5), now - timedelta(hours=2)):
        body = generic_body(f"logged_{at:%H%M%S}")
        fields = {"received_at": at.isoformat(), "vendor": "oura", "delivery_id": "t",
                  "content_type": "application/json", "delivery_id_source": "receiver",
                  "signature_verified": False}  # fmt: skip
        records.append((new_key("oura", at), body, orjson.dumps(fields)))
    (store.root / commit_log.LOG_FOLDER).mkdir(parents=True, exist_ok=True)
    segment = store.root / commit_log.LOG_FOLDER / "999999-000000.log"
    segment.write_bytes(commit_log.encode(records[:1]))
    report = run_verify(pipeline, now=now)
    assert (report.receiver_log_pending, report.ok) == (1, True)  # recent: pending, not lost
    assert report.receiver_log_oldest_age_s is not None
    assert report.counts()["receiver_log_pending"] == 1

    segment.write_bytes(commit_log.encode(records))
    report = run_verify(pipeline, now=now)
    assert report.receiver_log_pending == 2
    assert kinds(report) == {"receiver_log_behind": {str(store.root / commit_log.LOG_FOLDER)}}

    assert commit_log.recover(store) == 2  # what the receiver does when it starts
    assert pipeline.ingest().is_completed()
    report = run_verify(pipeline)
    assert report.receiver_log_pending == 0
    assert report.ok, report.discrepancies
