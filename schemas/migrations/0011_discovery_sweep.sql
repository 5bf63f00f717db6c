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
