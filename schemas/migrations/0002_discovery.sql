-- Version 2: discovery cursors and the 'deferred' ledger state.

-- How far each vendor's partitions have been listed for sure: every object received before
-- listed_through is in the ledger. A run lists from here minus nothing, plus a settle window.
CREATE TABLE IF NOT EXISTS biobridge.discovery_cursor (
    vendor         text PRIMARY KEY,
    listed_through timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL DEFAULT now()
);

-- 'deferred': a pointer notification (Oura, WHOOP, Fitbit, Withings, Polar) whose data must be
-- fetched from the vendor's API; it stays visible until a fetcher exists.
ALTER TABLE biobridge.landed_files DROP CONSTRAINT IF EXISTS landed_files_state_check;
ALTER TABLE biobridge.landed_files ADD CONSTRAINT landed_files_state_check
    CHECK (state IN ('pending', 'loaded', 'quarantined', 'deferred'));
ALTER TABLE biobridge.landed_files ADD COLUMN IF NOT EXISTS note text;
ALTER TABLE biobridge.loads ADD COLUMN IF NOT EXISTS files_deferred integer NOT NULL DEFAULT 0;
