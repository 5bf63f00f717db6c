-- Version 7: deliveries are ordered by the store, not by the receivers' clocks (issue 14), and a
-- replay re-derives what a delivery produced (issue 13). See docs/ordering.md.

-- Every ledger entry gets a number from one Postgres sequence when discovery records it: the
-- order in which deliveries became known. "Newest wins" compares these numbers, never the
-- received_at a receiver stamped (two receivers' clocks differ; a slow one is minutes behind).
-- Entries that exist already are numbered in the order the old rule used, (received_at, key).
CREATE SEQUENCE IF NOT EXISTS biobridge.delivery_seq AS bigint;
ALTER TABLE biobridge.landed_files ADD COLUMN IF NOT EXISTS delivery_seq bigint;
WITH numbered AS (
    SELECT object_key, row_number() OVER (ORDER BY received_at, object_key) AS n
    FROM biobridge.landed_files WHERE delivery_seq IS NULL
)
UPDATE biobridge.landed_files AS f
SET delivery_seq = (SELECT coalesce(max(delivery_seq), 0) FROM biobridge.landed_files) + numbered.n
FROM numbered WHERE f.object_key = numbered.object_key;
SELECT setval('biobridge.delivery_seq',
              coalesce((SELECT max(delivery_seq) FROM biobridge.landed_files), 0) + 1, false);
ALTER TABLE biobridge.landed_files
    ALTER COLUMN delivery_seq SET DEFAULT nextval('biobridge.delivery_seq'),
    ALTER COLUMN delivery_seq SET NOT NULL;
ALTER SEQUENCE biobridge.delivery_seq OWNED BY biobridge.landed_files.delivery_seq;

-- Each row carries the number of the delivery that holds it (NULL: the old system's rows, which
-- any delivery replaces). Rows loaded before this version take their file's number.
ALTER TABLE public.biometric_events ADD COLUMN IF NOT EXISTS delivery_seq bigint;
UPDATE public.biometric_events AS e SET delivery_seq = f.delivery_seq
FROM biobridge.landed_files AS f
WHERE e.delivery_seq IS NULL AND e.source_key = f.object_key;

-- Rows a replay found its delivery no longer produces (a renamed metric, a record now
-- quarantined) are marked, not deleted: the loader has no DELETE (docs/security.md).
ALTER TABLE biobridge.loads ADD COLUMN IF NOT EXISTS rows_removed bigint NOT NULL DEFAULT 0;

-- The sequence's default is evaluated with the inserting role's rights: the loader records
-- discovered files.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'biobridge_loader') THEN
        GRANT USAGE, SELECT ON SEQUENCE biobridge.delivery_seq TO biobridge_loader;
    END IF;
END $$;
