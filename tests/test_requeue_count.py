"""Replay says how many files it requeued (issue 12, Why 6: "requeued -1 files", the driver's
rowcount)."""

from __future__ import annotations

from datetime import UTC, datetime

from landing.keys import new_key
from warehouse import ledger
from warehouse.postgres import connect


def test_requeue_returns_the_number_of_files_put_back(pg_url: str) -> None:
    at = datetime(2026, 11, 1, 9, tzinfo=UTC)
    keys = [new_key("oura", at) for _ in range(3)] + [new_key("whoop", at)]
    with connect(pg_url) as conn:
        load_id = ledger.start_load(conn, flow_run_id=None, kind="replay", code_version="test")
        ledger.record_discovered(conn, keys)
        with conn.cursor() as cur:
            cur.execute(
                "UPDATE biobridge.landed_files SET state = 'quarantined' "
                "WHERE object_key = ANY($1)",
                (keys[:2] + keys[3:],),
            )
        conn.commit()
        n = ledger.requeue(
            conn,
            load_id=load_id,
            vendors=["oura"],
            states=["quarantined"],
            received_from=None,
            received_until=None,
        )
        assert n == 2
        assert (
            ledger.requeue(
                conn, load_id=load_id, vendors=["oura"], states=["quarantined"],
                received_from=None, received_until=None,
            )
            == 0
        )  # fmt: skip
