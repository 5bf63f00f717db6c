-- Biobridge least-privilege roles. NOT a migration: an administrator (a superuser, or a role with
-- CREATEROLE that owns the database) applies it, connected to the Biobridge database:
--
--     psql "$ADMIN_URL" -v ON_ERROR_STOP=1 -f schemas/roles.sql
--
-- Idempotent: apply it before the first migration and again after every migration (the second
-- pass withdraws what default privileges gave too broadly, see the end). No passwords here: the
-- administrator sets them, e.g. `\password biobridge_loader` in psql. See docs/security.md.
--
--   biobridge_owner   owns schema biobridge and its tables and public.biometric_events; runs
--                     `biobridge migrate`. Nothing else should connect as it.
--   biobridge_loader  the flows and the receiver-side jobs: read and write the ledger, loads,
--                     quarantine, cursors and biometric_events; temporary staging tables.
--                     No DELETE, no TRUNCATE, no DDL.
--   biobridge_reader  the frontend and analysts: SELECT on biometric_events and schema biobridge.

DO $$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['biobridge_owner', 'biobridge_loader', 'biobridge_reader'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN
            EXECUTE format('CREATE ROLE %I LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE', r);
        END IF;
    END LOOP;
END
$$;

-- Connect and use temporary tables (the loader stages batches in pg_temp); the owner may create
-- schemas (the migrations run CREATE SCHEMA IF NOT EXISTS biobridge).
DO $$
BEGIN
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO biobridge_owner, biobridge_loader, '
                   'biobridge_reader', current_database());
    EXECUTE format('GRANT TEMPORARY ON DATABASE %I TO biobridge_loader', current_database());
    EXECUTE format('GRANT CREATE ON DATABASE %I TO biobridge_owner', current_database());
END
$$;

CREATE SCHEMA IF NOT EXISTS biobridge AUTHORIZATION biobridge_owner;
ALTER SCHEMA biobridge OWNER TO biobridge_owner;
-- The owner creates public.biometric_events on a fresh database (PostgreSQL 15+ gives PUBLIC no
-- CREATE on schema public).
GRANT USAGE, CREATE ON SCHEMA public TO biobridge_owner;
GRANT USAGE ON SCHEMA public, biobridge TO biobridge_loader, biobridge_reader;

-- Objects a superuser created before this file (the old system's biometric_events, or migrations
-- applied as postgres) pass to the owner, who must own them to migrate them.
DO $$
DECLARE
    t record;
BEGIN
    FOR t IN
        SELECT c.oid::regclass AS name FROM pg_class AS c JOIN pg_namespace AS n
            ON n.oid = c.relnamespace
        WHERE c.relkind IN ('r', 'p', 'v')
          AND (n.nspname = 'biobridge'
               OR (n.nspname = 'public'
                   AND c.relname IN ('biometric_events', 'current_biometric_events'))
               -- its month partitions (migration 0008): the owner detaches and archives them
               OR c.oid IN (SELECT inhrelid FROM pg_inherits
                            WHERE inhparent = to_regclass('public.biometric_events')))
    LOOP
        -- Owned (identity) sequences follow their table.
        EXECUTE format('ALTER TABLE %s OWNER TO biobridge_owner', t.name);
    END LOOP;
END
$$;

-- Tables and sequences the owner creates from now on (every migration; in public that is only
-- biometric_events) get these privileges.
ALTER DEFAULT PRIVILEGES FOR ROLE biobridge_owner IN SCHEMA biobridge, public
    GRANT SELECT, INSERT, UPDATE ON TABLES TO biobridge_loader;
ALTER DEFAULT PRIVILEGES FOR ROLE biobridge_owner IN SCHEMA biobridge, public
    GRANT USAGE, SELECT ON SEQUENCES TO biobridge_loader;
ALTER DEFAULT PRIVILEGES FOR ROLE biobridge_owner IN SCHEMA biobridge, public
    GRANT SELECT ON TABLES TO biobridge_reader;

-- The same on what exists already.
GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA biobridge TO biobridge_loader;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA biobridge TO biobridge_loader;
GRANT SELECT ON ALL TABLES IN SCHEMA biobridge TO biobridge_reader;
DO $$
BEGIN
    IF to_regclass('public.biometric_events') IS NOT NULL THEN
        GRANT SELECT, INSERT, UPDATE ON public.biometric_events TO biobridge_loader;
        GRANT SELECT ON public.biometric_events TO biobridge_reader;
    END IF;
    -- The view readers use: rows a vendor deleted (deleted_at set) left out (migration 0005).
    IF to_regclass('public.current_biometric_events') IS NOT NULL THEN
        GRANT SELECT ON public.current_biometric_events TO biobridge_loader, biobridge_reader;
    END IF;
    IF to_regclass('public.biometric_events') IS NOT NULL THEN
        IF pg_get_serial_sequence('public.biometric_events', 'id') IS NOT NULL THEN
            EXECUTE format('GRANT USAGE, SELECT ON SEQUENCE %s TO biobridge_loader',
                           pg_get_serial_sequence('public.biometric_events', 'id'));
        END IF;
    END IF;
    -- The loader only checks that nothing is pending: it must not be able to mark a migration
    -- applied. (Default privileges gave it INSERT/UPDATE when the owner created the table.)
    IF to_regclass('biobridge.schema_migrations') IS NOT NULL THEN
        REVOKE INSERT, UPDATE ON biobridge.schema_migrations FROM biobridge_loader;
    END IF;
END
$$;

-- Nobody but the owner deletes, truncates or changes the schema; say so explicitly, in case a
-- broader grant was made by hand before.
REVOKE DELETE, TRUNCATE, REFERENCES, TRIGGER ON ALL TABLES IN SCHEMA biobridge
    FROM biobridge_loader, biobridge_reader;
DO $$
BEGIN
    IF to_regclass('public.biometric_events') IS NOT NULL THEN
        REVOKE DELETE, TRUNCATE, REFERENCES, TRIGGER ON public.biometric_events
            FROM biobridge_loader, biobridge_reader;
    END IF;
END
$$;

-- The exceptions hold no data: a batch's in-flight marker (biobridge.open_batches, migration
-- 0006) and the queue entries of the files it settles (biobridge.pending_files, migration 0014)
-- are deleted by the loader in the transaction that commits the batch.
DO $$
BEGIN
    IF to_regclass('biobridge.open_batches') IS NOT NULL THEN
        GRANT DELETE ON biobridge.open_batches TO biobridge_loader;
    END IF;
    IF to_regclass('biobridge.pending_files') IS NOT NULL THEN
        GRANT DELETE ON biobridge.pending_files TO biobridge_loader;
    END IF;
END
$$;

-- Month partitions of biometric_events are created on demand by a function that runs with the
-- owner's rights (migration 0008); the loader may call it, nobody else.
DO $$
BEGIN
    IF to_regprocedure('biobridge.ensure_event_partitions(timestamptz[])') IS NOT NULL THEN
        ALTER FUNCTION biobridge.ensure_event_partitions(timestamptz[]) OWNER TO biobridge_owner;
        REVOKE ALL ON FUNCTION biobridge.ensure_event_partitions(timestamptz[]) FROM PUBLIC;
        GRANT EXECUTE ON FUNCTION biobridge.ensure_event_partitions(timestamptz[])
            TO biobridge_loader;
    END IF;
END
$$;
