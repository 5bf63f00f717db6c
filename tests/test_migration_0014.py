"""Migration 0014 (issue 11): a ledger upgraded with files pending queues every one of them."""

from __future__ import annotations

from warehouse import ledger
from warehouse.migrate import apply_migrations, discover_migrations
from warehouse.postgres import connect

SQL = next(m for m in discover_migrations() if m.version == 14).path.read_text()


def test_0014_queues_the_pending_files_of_an_upgraded_ledger_once(pg_empty_url: str) -> None:
    apply_migrations(pg_empty_url)
    with connect(pg_empty_url) as conn, conn.cursor() as cur:
        cur.execute("INSERT INTO biobridge.loads (code_version) VALUES ('t') RETURNING load_id")
        (load_id,) = cur.fetchone() or (None,)
        # A ledger as version 13 left it: pending files and their partial index, no queue rows.
        cur.execute(
            "INSERT INTO biobridge.landed_files (object_key, vendor, received_at, state, load_id) "
            "VALUES ('raw/oura/a', 'oura', '2026-11-01T10:00Z', 'pending', NULL), "
            "('raw/oura/b', 'oura', '2026-11-01T09:00Z', 'pending', $1), "
            "('raw/oura/c', 'oura', '2026-11-01T08:00Z', 'loaded', $1)",
            (load_id,),
        )
        cur.execute(
            "CREATE INDEX landed_files_pending_claim_idx ON biobridge.landed_files "
            "(received_at, object_key) WHERE state = 'pending'"
        )
        conn.commit()
        for _ in range(2):  # the file as written, twice: idempotent
            cur.executescript(SQL)
            conn.commit()
        cur.execute(
            "SELECT p.object_key, p.delivery_seq = f.delivery_seq, p.loaded_before "
            "FROM biobridge.pending_files AS p JOIN biobridge.landed_files AS f USING (object_key) "
            "ORDER BY 1"
        )
        assert cur.fetchall() == [("raw/oura/a", True, False), ("raw/oura/b", True, True)]
        cur.execute("SELECT to_regclass('biobridge.landed_files_pending_claim_idx')")
        assert cur.fetchone() == (None,)
        cur.execute(
            "SELECT reloptions FROM pg_class WHERE oid = 'biobridge.landed_files'::regclass"
        )
        assert cur.fetchone() == (["fillfactor=30"],)
        conn.commit()
        claim = ledger.claim_pending(
            conn, limit=10, vendors=["oura"], received_from=None, received_until=None
        )
        assert claim.keys == ["raw/oura/b", "raw/oura/a"]  # oldest first
        assert claim.loaded_before == frozenset({"raw/oura/b"})
        conn.rollback()
    assert apply_migrations(pg_empty_url) == []
