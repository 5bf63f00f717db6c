"""Migration 0006 (issue 11): applied to a database that already holds rows, and applied again."""

from __future__ import annotations

from warehouse.migrate import apply_migrations, discover_migrations
from warehouse.postgres import connect

SQL = next(m for m in discover_migrations() if m.version == 6).path.read_text()


def test_0006_applies_over_loaded_rows_and_again_without_change(pg_empty_url: str) -> None:
    applied = apply_migrations(pg_empty_url)
    assert any(name.startswith("0006_") for name in applied), applied
    with connect(pg_empty_url) as conn, conn.cursor() as cur:
        cur.execute("INSERT INTO biobridge.loads (code_version) VALUES ('t') RETURNING load_id")
        (load_id,) = cur.fetchone() or (None,)
        cur.execute(
            "INSERT INTO public.biometric_events (user_id, device_type, metric_type, value, "
            "\"timestamp\") VALUES ('u', 'oura', 'steps', 1, now())"
        )
        cur.execute(
            "INSERT INTO biobridge.open_batches (load_id, object_keys) "
            'VALUES ($1, \'{"raw/a", "raw/b"}\')',
            (load_id,),
        )
        conn.commit()
        # The file as written, once more: idempotent, and the rows stay.
        cur.executescript(SQL)
        conn.commit()
        cur.execute("SELECT count(*) FROM biobridge.open_batches")
        assert cur.fetchone() == (1,)
        cur.execute("SELECT count(*) FROM public.biometric_events")
        assert cur.fetchone() == (1,)
    assert apply_migrations(pg_empty_url) == []
