-- Version 6: batches that were opened and never committed, so a file that keeps killing or
-- failing runs can be told apart and set aside (issue 11).
--
-- A batch inserts its row here on its own, committed connection before it parses anything,
-- and deletes it in the transaction that loads the batch. A row that stays behind is a batch
-- whose run died (killed, out of memory) or failed: every file in it has one more attempt.
-- Files with attempts are then loaded in smaller groups and finally alone; a file that failed
-- alone `max_attempts` times is quarantined with the reason, so it never blocks the files behind
-- it. The table only ever holds in-flight batches and the failed ones of pending files.
CREATE TABLE IF NOT EXISTS biobridge.open_batches (
    batch_id    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    load_id     bigint      REFERENCES biobridge.loads (load_id),
    opened_at   timestamptz NOT NULL DEFAULT now(),
    object_keys text[]      NOT NULL
);
-- The loader deletes its own batch's row when the batch commits (schemas/roles.sql grants it
-- SELECT, INSERT, UPDATE on biobridge's tables, no DELETE).
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'biobridge_loader') THEN
        GRANT SELECT, INSERT, DELETE ON biobridge.open_batches TO biobridge_loader;
    END IF;
END $$;
