-- Version 14: pending files are claimed from a queue of their own, biobridge.pending_files, not
-- through a partial index on landed_files.state (issue 11).
--
-- A file is in pending_files exactly while its ledger row says state = 'pending': discovery and
-- requeue insert it in the statement that makes it pending, and the batch that settles it
-- (loaded, quarantined, deferred, set aside) deletes it in the transaction that changes its
-- state. Batches claim (and row-lock) queue rows, FOR UPDATE SKIP LOCKED, oldest first.
--
-- Why: the index on "state = 'pending'" made every ledger update of a batch a non-HOT update (a
-- column of an index predicate changed): a new heap tuple on another page and new entries in
-- every index of landed_files, for each file. With no index on state, and room left on each
-- page (fillfactor 30: a batch rewrites all the rows of a page at once, and the old versions
-- stay until it commits), the update stays on its page and touches no index; the queue row's
-- delete only marks it. Measured (benchmarks/ingest.py's instrumented run, 100k small files,
-- batches of 2,000): on the upsert's serialised path, the ledger update 1.9-2.1 s -> 1.0-1.2 s
-- (all HOT) plus 0.3 s of dequeueing; outside it, the discovery insert (two tables now)
-- 0.9-1.3 s -> 1.6-1.8 s and the claim 0.6-0.9 s -> 1.1-1.2 s. A trade: less time under the
-- lock that serialises every loader, about as much database CPU in all.
-- The cost: landed_files takes ~590 bytes a file on disk (58 MB per 100k files).
CREATE TABLE IF NOT EXISTS biobridge.pending_files (
    object_key    text        PRIMARY KEY,
    vendor        text        NOT NULL,
    received_at   timestamptz NOT NULL,
    -- Copies of what the claim needs from the ledger row, so it reads one table:
    delivery_seq  bigint      NOT NULL,  -- landed_files.delivery_seq (never changes)
    loaded_before boolean     NOT NULL   -- landed_files.load_id IS NOT NULL when queued
);
CREATE INDEX IF NOT EXISTS pending_files_claim_idx
    ON biobridge.pending_files (received_at, object_key);
INSERT INTO biobridge.pending_files (object_key, vendor, received_at, delivery_seq, loaded_before)
SELECT object_key, vendor, received_at, delivery_seq, load_id IS NOT NULL
FROM biobridge.landed_files WHERE state = 'pending'
ON CONFLICT (object_key) DO NOTHING;
DROP INDEX IF EXISTS biobridge.landed_files_pending_claim_idx;
-- A settled file's row is rewritten once, in place: keep room on each page for that.
ALTER TABLE biobridge.landed_files SET (fillfactor = 30);
-- The loader settles files: it deletes their queue rows (schemas/roles.sql grants it SELECT,
-- INSERT, UPDATE on biobridge's tables, no DELETE).
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'biobridge_loader') THEN
        GRANT SELECT, INSERT, DELETE ON biobridge.pending_files TO biobridge_loader;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'biobridge_reader') THEN
        GRANT SELECT ON biobridge.pending_files TO biobridge_reader;
    END IF;
END $$;
