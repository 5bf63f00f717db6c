-- Version 8: public.biometric_events is partitioned by month of "timestamp" (issue 14), so a table
-- of billions of rows keeps small indexes per month and old months detach or archive:
--
--     ALTER TABLE public.biometric_events DETACH PARTITION public.biometric_events_2025_01 CONCURRENTLY;
--
-- The measurement key (user_id, device_type, metric_type, "timestamp") contains the partition
-- column, so it stays one unique index, enforced per partition; the primary key is (id, "timestamp").
-- Partitions are created on demand, before a batch writes, by ensure_event_partitions: the loader
-- may call it, but has no DDL rights of its own (docs/security.md). Canonical rows are stamped from
-- 1970 to a day ahead (schemas/canonical.py), so there is never more than one partition a month.
-- Rows written by other means for a month without a partition go to biometric_events_default.

-- One partition per month in `months` (any instant within the month), created when missing.
-- SECURITY DEFINER: it runs with its owner's rights (biobridge_owner, schemas/roles.sql), which
-- the loader lacks; it only ever creates `public.biometric_events_YYYY_MM` for whole UTC months.
-- CREATE TABLE + ATTACH PARTITION takes SHARE UPDATE EXCLUSIVE on the parent, so readers and
-- the loader's own writes are not blocked while the batch that created it runs.
CREATE OR REPLACE FUNCTION biobridge.ensure_event_partitions(months timestamptz[])
RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    m timestamptz;
    first_day timestamp;
    part text;
    created integer := 0;
BEGIN
    FOREACH m IN ARRAY months LOOP
        first_day := date_trunc('month', m AT TIME ZONE 'UTC');
        part := 'biometric_events_' || to_char(first_day, 'YYYY_MM');
        CONTINUE WHEN to_regclass(format('public.%I', part)) IS NOT NULL;
        -- Two loaders missing the same month: the second waits here for the first to commit,
        -- then its CREATE finds the table (this statement's catalog view may predate it).
        PERFORM pg_advisory_xact_lock(hashtext('biobridge.ensure_event_partitions'));
        BEGIN
            EXECUTE format('CREATE TABLE public.%I (LIKE public.biometric_events '
                           'INCLUDING DEFAULTS INCLUDING CONSTRAINTS)', part);
        EXCEPTION WHEN duplicate_table THEN
            CONTINUE;
        END;
        -- Rows of this month written before it had a partition (by hand, by the old system)
        -- went to the default partition: they move to the new one.
        EXECUTE format('WITH moved AS (DELETE FROM public.biometric_events_default '
                       'WHERE "timestamp" >= %L AND "timestamp" < %L RETURNING *) '
                       'INSERT INTO public.%I SELECT * FROM moved',
                       first_day AT TIME ZONE 'UTC',
                       (first_day + interval '1 month') AT TIME ZONE 'UTC', part);
        EXECUTE format('ALTER TABLE public.biometric_events ATTACH PARTITION public.%I '
                       'FOR VALUES FROM (%L) TO (%L)', part,
                       first_day AT TIME ZONE 'UTC',
                       (first_day + interval '1 month') AT TIME ZONE 'UTC');
        created := created + 1;
    END LOOP;
    RETURN created;
END
$$;
REVOKE ALL ON FUNCTION biobridge.ensure_event_partitions(timestamptz[]) FROM PUBLIC;

-- An unpartitioned table (every database before this version) is copied into the partitioned one
-- in this transaction, ids and all, counted, and dropped; the view readers use moves with it.
DO $$
DECLARE
    idx record;
    extra text;
    copied bigint;
    held bigint;
BEGIN
    IF (SELECT relkind FROM pg_class WHERE oid = 'public.biometric_events'::regclass) = 'p' THEN
        RETURN;
    END IF;
    SELECT string_agg(column_name, ', ') INTO extra FROM information_schema.columns
    WHERE table_schema = 'public' AND table_name = 'biometric_events'
      AND column_name NOT IN ('id', 'user_id', 'device_type', 'metric_type', 'value',
                              'timestamp', 'metadata', 'raw_data', 'unit', 'received_at',
                              'created_at', 'source_key', 'record_index', 'load_id',
                              'deleted_at', 'deleted_by', 'delivery_seq');
    IF extra IS NOT NULL THEN
        RAISE EXCEPTION 'public.biometric_events has columns this migration would not copy: %', extra
            USING HINT = 'move or drop them (they are not Biobridge''s), then migrate again';
    END IF;

    ALTER TABLE public.biometric_events RENAME TO biometric_events_unpartitioned;
    FOR idx IN
        SELECT i.relname FROM pg_index AS x JOIN pg_class AS i ON i.oid = x.indexrelid
        WHERE x.indrelid = 'public.biometric_events_unpartitioned'::regclass
    LOOP
        EXECUTE format('ALTER INDEX public.%I RENAME TO %I', idx.relname,
                       left('unpartitioned_' || idx.relname, 63));
    END LOOP;

    CREATE TABLE public.biometric_events (
        id           bigint GENERATED BY DEFAULT AS IDENTITY,
        user_id      text             NOT NULL,
        device_type  text             NOT NULL,
        metric_type  text             NOT NULL,
        value        double precision NOT NULL,
        "timestamp"  timestamptz      NOT NULL,
        metadata     jsonb,
        raw_data     jsonb,
        unit         text,
        received_at  timestamptz,
        created_at   timestamptz      NOT NULL DEFAULT now(),
        source_key   text,
        record_index integer,
        load_id      bigint,
        deleted_at   timestamptz,
        deleted_by   text,
        delivery_seq bigint
    ) PARTITION BY RANGE ("timestamp");
    -- Rows of a month without its partition yet (written by anything but the loader, which
    -- creates the month first) land here; creating the month moves them.
    CREATE TABLE public.biometric_events_default PARTITION OF public.biometric_events DEFAULT;

    PERFORM biobridge.ensure_event_partitions(ARRAY(
        SELECT DISTINCT date_trunc('month', "timestamp" AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
        FROM public.biometric_events_unpartitioned));
    -- Copied before the indexes exist: building them once is faster than maintaining them.
    INSERT INTO public.biometric_events
        (id, user_id, device_type, metric_type, value, "timestamp", metadata, raw_data, unit,
         received_at, created_at, source_key, record_index, load_id, deleted_at, deleted_by,
         delivery_seq)
    SELECT id, user_id, device_type, metric_type, value, "timestamp", metadata, raw_data, unit,
           received_at, created_at, source_key, record_index, load_id, deleted_at, deleted_by,
           delivery_seq
    FROM public.biometric_events_unpartitioned;
    GET DIAGNOSTICS copied = ROW_COUNT;
    SELECT count(*) INTO held FROM public.biometric_events_unpartitioned;
    IF copied <> held THEN
        RAISE EXCEPTION 'partitioning biometric_events copied % of % rows', copied, held;
    END IF;

    ALTER TABLE public.biometric_events ADD PRIMARY KEY (id, "timestamp");
    CREATE UNIQUE INDEX biometric_events_measurement_key
        ON public.biometric_events (user_id, device_type, metric_type, "timestamp");
    CREATE INDEX biometric_events_source_key_idx ON public.biometric_events (source_key);
    PERFORM setval(pg_get_serial_sequence('public.biometric_events', 'id'),
                   coalesce((SELECT max(id) FROM public.biometric_events), 0) + 1, false);

    -- Same columns, new table: the view keeps its grants.
    CREATE OR REPLACE VIEW public.current_biometric_events AS
        SELECT id, user_id, device_type, metric_type, value, "timestamp", metadata, raw_data,
               unit, received_at, created_at, source_key, record_index, load_id
        FROM public.biometric_events WHERE deleted_at IS NULL;
    DROP TABLE public.biometric_events_unpartitioned;

    -- The grants the old table had (schemas/roles.sql gives the same on its next pass).
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'biobridge_loader') THEN
        GRANT SELECT, INSERT, UPDATE ON public.biometric_events TO biobridge_loader;
        EXECUTE format('GRANT USAGE, SELECT ON SEQUENCE %s TO biobridge_loader',
                       pg_get_serial_sequence('public.biometric_events', 'id'));
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'biobridge_reader') THEN
        GRANT SELECT ON public.biometric_events TO biobridge_reader;
    END IF;
END
$$;

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'biobridge_loader') THEN
        GRANT EXECUTE ON FUNCTION biobridge.ensure_event_partitions(timestamptz[])
            TO biobridge_loader;
    END IF;
END $$;
