-- Version 11: discovery's sweep, which finds objects whatever the receivers' clocks said.
-- A receiver whose clock is behind writes keys into partitions the cursor has already passed;
-- the sweep lists each vendor's whole prefix a bounded number of keys per run, resuming after
-- sweep_after, so every landed object is recorded within one pass (docs/scaling.md).

-- The last key the current pass listed (NULL: the next run starts a new pass).
ALTER TABLE biobridge.discovery_cursor ADD COLUMN IF NOT EXISTS sweep_after text;
-- When the current pass started (NULL: none in progress).
ALTER TABLE biobridge.discovery_cursor ADD COLUMN IF NOT EXISTS sweep_started_at timestamptz;
-- When the last completed pass started: every object landed before it is in the ledger.
ALTER TABLE biobridge.discovery_cursor ADD COLUMN IF NOT EXISTS swept_through timestamptz;

-- Vendor rate limits shared by every worker (tasks/fetch/limiter.py): a moving window kept as
-- the times of the last `requests` calls per bucket (vendor, scope, user); a call may go when
-- the oldest of them left the window. Rows are only inserted and updated, never deleted: a
-- bucket holds at most its limit's `requests` rows.
CREATE TABLE IF NOT EXISTS biobridge.rate_limit_slots (
    bucket text        NOT NULL,
    slot   integer     NOT NULL,
    at     timestamptz NOT NULL,
    PRIMARY KEY (bucket, slot)
);
CREATE INDEX IF NOT EXISTS rate_limit_slots_oldest ON biobridge.rate_limit_slots (bucket, at);
