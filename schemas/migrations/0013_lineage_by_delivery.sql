-- Version 13: a file's rows are found through their delivery number, not their source key
-- (issue 11). The hash index on biometric_events.source_key (0012) goes; a btree on
-- delivery_seq takes its place.
--
-- Every load writes a row's source_key and delivery_seq together, from the same ledger row
-- (biobridge.landed_files: object_key, delivery_seq; docs/ordering.md), so "the rows of file K"
-- are the rows whose delivery_seq is K's, and lineage looks them up that way (ops/lineage.py,
-- the replay's removal in tasks/load.py, ops/verify_rows.py, warehouse/notifications.py), then
-- checks source_key = K as well. `biobridge verify` reports a row whose two disagree.
--
-- Why: the hash index on those long, random keys wrote a random bucket page per inserted row;
-- deliveries are numbered in the order they became known and loaded in about that order, so the
-- btree on delivery_seq grows at its right edge. Measured (benchmarks/ingest.py --mix small,
-- 100k files, alternating runs): the upsert's INSERT 8.7-10.3 s -> 7.5-7.7 s, the flow
-- 14.3-16.7 s -> 11.8-12.4 s. An analyst's ad-hoc `WHERE source_key = ...` now scans; `biobridge
-- lineage <key>` (or a join with landed_files on delivery_seq) is the indexed way.
DROP INDEX IF EXISTS public.biometric_events_source_key_hash;
CREATE INDEX IF NOT EXISTS biometric_events_delivery_seq_idx
    ON public.biometric_events (delivery_seq);
