-- Version 3: the claim query orders pending files by (received_at, object_key); an index in that
-- order lets LIMIT stop early instead of sorting every pending entry of the ledger.
CREATE INDEX IF NOT EXISTS landed_files_pending_claim_idx
    ON biobridge.landed_files (received_at, object_key) WHERE state = 'pending';
DROP INDEX IF EXISTS biobridge.landed_files_pending_idx;
