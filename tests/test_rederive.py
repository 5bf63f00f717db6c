"""A replay re-derives (issue 13 items 1-2) and deliveries are ordered by the ledger, not by the
receivers' clocks (issue 14 item 4b).

Stage level: the same functions the ingest flow's tasks call (discover, requeue, process_batch),
against real Postgres and a real local store. The mapping change is made where a fix would be:
the generic flattener's mapping table (a unit factor, and a metric renamed).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import polars as pl
import pytest

from landing.store import ObjectStore, open_store
from ops.verify_rows import RowTally, check_loaded_files
from schemas.loads import LoadCounts
from tasks.batch import BatchSpec, process_batch
from tasks.discover import discover
from tasks.flatten import generic
from tasks.preview import preview_replay
from warehouse import ledger
from warehouse.postgres import connect

T0 = datetime(2026, 11, 1, 9, tzinfo=UTC)
SPEC = BatchSpec(limit=100, vendors=("oura",))


def body(user: str, **data: float) -> bytes:
    values = data or {
        "readiness_score": 92,
        "hrv_balance": 75.5,
        "body_temperature": 36.4,
        "resting_heart_rate": 48,
        "respiratory_rate": 13.5,
        "sleep_score": 88,
        "activity_balance": 91,
    }
    return orjson.dumps(
        {
            "event_type": "daily_readiness",
            "user_id": user,
            "timestamp": "2026-10-31T07:00:00Z",
            "data": values,
        }
    )


@pytest.fixture
def store(tmp_path: Path) -> ObjectStore:
    return open_store(f"file://{tmp_path / 'landing'}")


def land(store: ObjectStore, payload: bytes, at: datetime) -> str:
    from tests.helpers import land as land_at

    return land_at(store, "oura", payload, at=at)


def load(url: str, store: ObjectStore, *, kind: str = "scheduled", **replay: Any) -> LoadCounts:
    """One ingest the way the flow does it: (requeue,) discover, batches until none is left."""
    total = LoadCounts()
    with connect(url) as conn:
        load_id = ledger.start_load(conn, flow_run_id=None, kind=kind, code_version="test")
        if replay:
            ledger.requeue(conn, load_id=load_id, vendors=["oura"], **replay)
        discover(conn, store, vendors=["oura"], window=(None, None))
        while (
            counts := process_batch(conn, store, load_id=load_id, spec=SPEC, url=url)
        ) is not None:
            total.add(counts)
    return total


def table(url: str) -> dict[int, tuple[Any, ...]]:
    with connect(url) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT id, metric_type, value, unit, source_key, deleted_by "
            "FROM public.biometric_events ORDER BY id"
        )
        return {int(r[0]): tuple(r[1:]) for r in cur.fetchall()}


def ledger_states(url: str) -> list[tuple[Any, ...]]:
    with connect(url) as conn, conn.cursor() as cur:
        cur.execute("SELECT object_key, state, load_id FROM biobridge.landed_files ORDER BY 1")
        return list(cur.fetchall())


def changed_mapping(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fix: resting heart rate had a factor of 1.5 missing; sleep_score is activity_score."""
    fixed = generic.MAPPING.with_columns(
        mul=pl.when(pl.col("metric_type") == "resting_heart_rate_bpm")
        .then(pl.col("mul") * 1.5)
        .otherwise(pl.col("mul")),
        metric_type=pl.when(pl.col("metric_type") == "sleep_score")
        .then(pl.lit("activity_score"))
        .otherwise(pl.col("metric_type")),
    )
    monkeypatch.setattr(generic, "MAPPING", fixed)


def totals(c: LoadCounts) -> tuple[int, int, int, int]:
    return (c.rows_inserted, c.rows_updated, c.rows_removed, c.rows_unchanged)


def test_replay_after_a_mapping_fix_changes_exactly_the_affected_rows(
    pg_url: str, store: ObjectStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    for n, user in enumerate(("u1", "u2", "u3")):
        land(store, body(user), T0 + timedelta(minutes=n))
    assert totals(load(pg_url, store)) == (21, 0, 0, 0)
    # A later delivery of one measurement, outside the replay window below.
    later = land(store, body("u1", readiness_score=50), T0 + timedelta(hours=2))
    assert totals(load(pg_url, store)) == (0, 1, 0, 0)

    changed_mapping(monkeypatch)
    window = {
        "states": ["loaded"],
        "received_from": T0,
        "received_until": T0 + timedelta(hours=1),
    }
    before, before_ledger = table(pg_url), ledger_states(pg_url)
    with connect(pg_url) as conn:
        preview = preview_replay(
            conn,
            store,
            spec=BatchSpec(
                limit=100,
                vendors=("oura",),
                received_from=window["received_from"],
                received_until=window["received_until"],
            ),
            states=window["states"],
            code_version="fix",
            url=pg_url,
        )
    assert table(pg_url) == before and ledger_states(pg_url) == before_ledger  # nothing changed
    per_metric = {
        metric: (c.inserted, c.updated, c.removed, c.unchanged)
        for (_vendor, metric), c in preview.changes.items()
    }
    assert per_metric == {
        "activity_score": (3, 0, 0, 0),
        "body_temperature_c": (0, 0, 0, 3),
        "readiness_contributor_activity_balance": (0, 0, 0, 3),
        "readiness_contributor_hrv_balance": (0, 0, 0, 3),
        "readiness_score": (0, 0, 0, 3),  # u1's is held by the later delivery: it stays
        "resting_heart_rate_bpm": (0, 3, 0, 0),
        "respiratory_rate_brpm": (0, 0, 0, 3),
        "sleep_score": (0, 0, 3, 0),
    }
    hr = preview.changes[("oura", "resting_heart_rate_bpm")]
    assert hr.samples[0].startswith("u1 at ") and "48 bpm -> 72 bpm" in hr.samples[0]

    replayed = load(pg_url, store, kind="replay", **window)
    assert totals(replayed) == totals(preview.counts) == (3, 3, 3, 15)

    after = table(pg_url)
    changed = {i for i in after if after[i] != before.get(i)}
    assert {after[i][0] for i in changed} == {
        "activity_score",
        "resting_heart_rate_bpm",
        "sleep_score",
    }
    assert len(changed) == 9  # 3 inserted, 3 updated, 3 removed: nothing else moved
    removed = [row for row in after.values() if row[0] == "sleep_score"]
    assert all(row[4].startswith("rederive:load ") for row in removed)
    with connect(pg_url) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT metric_type, count(*) FROM public.current_biometric_events "
            "WHERE metric_type IN ('sleep_score', 'activity_score') GROUP BY 1"
        )
        assert dict(cur.fetchall()) == {"activity_score": 3}
        cur.execute(
            "SELECT value, source_key FROM public.biometric_events "
            "WHERE user_id = 'u1' AND metric_type = 'readiness_score'"
        )
        assert cur.fetchall() == [(50.0, later)]  # the later delivery still wins

    again = load(pg_url, store, kind="replay", **window)
    assert totals(again) == (0, 0, 0, 21)
    assert table(pg_url) == after

    with connect(pg_url) as conn, conn.cursor() as cur:
        cur.execute("SELECT object_key, rows_loaded FROM biobridge.landed_files ORDER BY 1")
        files = [(str(k), int(n)) for k, n in cur.fetchall()]
        tally = RowTally()
        check_loaded_files(conn, store, files, now=datetime.now(UTC), tally=tally)
    assert tally.problems == [], tally.problems


def test_a_slow_receivers_later_delivery_wins(pg_url: str, store: ObjectStore) -> None:
    land(store, body("u1", readiness_score=70), T0)
    load(pg_url, store)
    # A second receiver, its clock 15 minutes behind, lands a correction afterwards: its key and
    # received_at say it is older; the ledger knows it came later.
    correction = land(store, body("u1", readiness_score=71), T0 - timedelta(minutes=15))
    assert totals(load(pg_url, store)) == (0, 1, 0, 0)
    with connect(pg_url) as conn, conn.cursor() as cur:
        cur.execute("SELECT value, source_key FROM public.biometric_events")
        assert cur.fetchall() == [(71.0, correction)]
    # Replaying both (in one batch, in either order) keeps the order the ledger gave them.
    replay = {"states": ["loaded"], "received_from": None, "received_until": None}
    assert totals(load(pg_url, store, kind="replay", **replay)) == (0, 0, 0, 1)
    with connect(pg_url) as conn, conn.cursor() as cur:
        cur.execute("SELECT value FROM public.biometric_events")
        assert cur.fetchall() == [(71.0,)]


def test_identical_redelivery_counts_as_unchanged(pg_url: str, store: ObjectStore) -> None:
    land(store, body("u1"), T0)
    load(pg_url, store)
    again = land(store, body("u1"), T0 + timedelta(minutes=5))
    assert totals(load(pg_url, store)) == (0, 0, 0, 7)
    with connect(pg_url) as conn, conn.cursor() as cur:
        cur.execute("SELECT DISTINCT source_key FROM public.biometric_events")
        assert cur.fetchall() == [(again,)]  # the latest delivery holds them


def test_cli_dry_run_prints_the_counts_and_changes_nothing(
    pg_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from deployments.cli import main
    from tasks import runtime

    store = open_store(f"file://{tmp_path / 'cli-landing'}")
    land(store, body("u1"), T0)
    load(pg_url, store)
    monkeypatch.setenv("BIOBRIDGE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("BIOBRIDGE_DATABASE_URL", pg_url)
    monkeypatch.setenv("BIOBRIDGE_LANDING_URL", f"file://{tmp_path / 'cli-landing'}")
    runtime.reset()
    changed_mapping(monkeypatch)
    before, before_ledger = table(pg_url), ledger_states(pg_url)

    code = main(
        ["ingest", "--mode", "replay", "--state", "loaded", "--vendor", "oura", "--dry-run"]
    )
    out = capsys.readouterr().out
    runtime.reset()

    assert code == 0
    assert out.startswith("dry run (nothing was changed): 1 files requeued, 1 read, 1 loaded")
    assert "rows 1 inserted, 1 updated, 1 removed, 5 unchanged" in out
    assert "  oura sleep_score: 0 inserted, 0 updated, 1 removed, 0 unchanged" in out
    assert "48 bpm -> 72 bpm" in out
    assert table(pg_url) == before and ledger_states(pg_url) == before_ledger


def test_a_dry_run_over_several_batches_counts_each_row_once(
    pg_url: str, store: ObjectStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A dry run stages batch after batch in one transaction: each batch's staging tables hold
    that batch's rows only, so one file per batch previews what one batch of all does."""
    for n, user in enumerate(("u1", "u2", "u3")):
        land(store, body(user), T0 + timedelta(minutes=n))
    load(pg_url, store)
    changed_mapping(monkeypatch)

    def preview(limit: int) -> tuple[int, int, int, int]:
        with connect(pg_url) as conn:
            found = preview_replay(
                conn,
                store,
                spec=BatchSpec(limit=limit, vendors=("oura",)),
                states=["loaded"],
                code_version="fix",
                url=pg_url,
            )
        return totals(found.counts)

    assert preview(1) == preview(100) == (3, 3, 3, 15)
