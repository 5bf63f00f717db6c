-- Version 4: one name per quantity. A load's quarantined records are `records_quarantined`, as
-- in the ledger and in the code (the column was `rows_quarantined`).
DO $$
BEGIN
    IF EXISTS (
        SELECT 1 FROM information_schema.columns
        WHERE table_schema = 'biobridge' AND table_name = 'loads'
          AND column_name = 'rows_quarantined'
    ) THEN
        ALTER TABLE biobridge.loads RENAME COLUMN rows_quarantined TO records_quarantined;
    END IF;
END $$;
