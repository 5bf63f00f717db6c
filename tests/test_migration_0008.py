"""Migration 0008 (issue 14 item 5): an unpartitioned biometric_events holding rows becomes the
month-partitioned table without losing or changing a row, and loads go on into new months."""

from __future__ import annotations

import shutil
from pathlib import Path

from warehouse.migrate import MIGRATIONS_DIR, apply_migrations, discover_migrations
from warehouse.postgres import connect

# Every column, in id order: the table's content, whatever its physical layout.
CONTENT = """
SELECT count(*), md5(string_agg(concat_ws('|', id, user_id, device_type, metric_type, value,
    "timestamp", metadata, raw_data, unit, received_at, created_at, source_key, record_index,
    load_id, deleted_at, deleted_by, delivery_seq), ',' ORDER BY id))
FROM public.biometric_events
"""

ROWS = """
INSERT INTO public.biometric_events (user_id, device_type, metric_type, value, "timestamp",
    metadata, unit, received_at, source_key, record_index, load_id, deleted_at, deleted_by,
    delivery_seq)
SELECT 'u' || (n % 50), 'oura', 'm' || (n % 7), n * 0.5,
    timestamptz '2026-08-15 00:00Z' + n * interval '97 minutes',
    jsonb_build_object('n', n), CASE WHEN n % 3 = 0 THEN NULL ELSE 'bpm' END,
    now(), 'raw/k' || (n % 11), n % 5, NULL,
    CASE WHEN n % 13 = 0 THEN now() END, CASE WHEN n % 13 = 0 THEN 'raw/del' END, n
FROM generate_series(1, 3000) AS n
"""


def test_0008_partitions_a_table_with_rows_without_losing_one(
    pg_empty_url: str, tmp_path: Path
) -> None:
    before_0008 = tmp_path / "migrations"
    before_0008.mkdir()
    for m in discover_migrations():
        if m.version < 8:
            shutil.copy(m.path, before_0008 / m.file_name)
    apply_migrations(pg_empty_url, folder=before_0008)
    with connect(pg_empty_url) as conn, conn.cursor() as cur:
        cur.execute(ROWS)
        conn.commit()
        cur.execute(CONTENT)
        content = cur.fetchone()
        cur.execute("SELECT count(*) FROM public.current_biometric_events")
        visible = cur.fetchone()

    applied = apply_migrations(pg_empty_url, folder=MIGRATIONS_DIR)
    assert applied[0].startswith("0008_"), applied

    with connect(pg_empty_url) as conn, conn.cursor() as cur:
        cur.execute("SELECT relkind FROM pg_class WHERE oid = 'public.biometric_events'::regclass")
        assert cur.fetchone() == ("p",)
        cur.execute(CONTENT)
        assert cur.fetchone() == content
        assert content is not None and content[0] == 3000
        cur.execute("SELECT count(*) FROM public.current_biometric_events")
        assert cur.fetchone() == visible
        cur.execute(
            "SELECT c.relname FROM pg_inherits AS i JOIN pg_class AS c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = 'public.biometric_events'::regclass ORDER BY 1"
        )
        months = [name for (name,) in cur.fetchall()]
        # 3000 rows 97 minutes apart from 2026-08-15: 2026-08 to 2027-03
        assert months == [f"biometric_events_2026_{m:02d}" for m in range(8, 13)] + [
            f"biometric_events_2027_{m:02d}" for m in range(1, 4)
        ] + ["biometric_events_default"]
        # A row written by hand for a month without a partition lands in the default one, and
        # moves to its month's partition when the month is created.
        cur.execute(
            "INSERT INTO public.biometric_events (user_id, device_type, metric_type, value, "
            "\"timestamp\") VALUES ('legacy', 'oura', 'm1', 1, '2024-01-01T00:00Z') RETURNING id"
        )
        (legacy_id,) = cur.fetchone() or (None,)
        cur.execute("SELECT biobridge.ensure_event_partitions(ARRAY[timestamptz '2024-01-15Z'])")
        cur.execute(
            "SELECT tableoid::regclass::text FROM public.biometric_events WHERE id = $1",
            (legacy_id,),
        )
        assert cur.fetchone() == ("biometric_events_2024_01",)
        # The measurement key still refuses a duplicate, ids continue after the copied ones.
        cur.execute(
            "SELECT biobridge.ensure_event_partitions(ARRAY[timestamptz '2027-06-30 23:59Z'])"
        )
        assert cur.fetchone() == (1,)
        cur.execute(
            "INSERT INTO public.biometric_events (user_id, device_type, metric_type, value, "
            "\"timestamp\") VALUES ('u1', 'oura', 'm1', 1, '2027-06-30 23:59Z'), "
            "('u1', 'oura', 'm1', 2, '2027-06-30 23:59Z') "
            'ON CONFLICT (user_id, device_type, metric_type, "timestamp") DO NOTHING '
            "RETURNING id"
        )
        assert cur.fetchall() == [(3002,)]
        cur.execute("SELECT tableoid::regclass::text FROM public.biometric_events WHERE id = 3002")
        assert cur.fetchone() == ("biometric_events_2027_06",)
        conn.commit()
    assert apply_migrations(pg_empty_url) == []
