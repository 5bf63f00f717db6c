-- Version 5: pointer vendors. Connections (encrypted OAuth tokens per vendor and user), the
-- resolution of every pointer notification, the documents fetched for it, and soft deletion of
-- rows a vendor's deletion event refers to.

-- One OAuth connection per (vendor, Biobridge user). Tokens are Fernet ciphertexts (key:
-- BIOBRIDGE_TOKEN_ENCRYPTION_KEY); nothing here is readable without the key.
CREATE TABLE IF NOT EXISTS biobridge.vendor_connections (
    vendor            text        NOT NULL,
    user_id           text        NOT NULL,
    vendor_user_id    text,
    access_token_enc  text        NOT NULL,
    refresh_token_enc text,
    expires_at        timestamptz,
    scope             text,
    utc_offset_s      integer,
    status            text        NOT NULL DEFAULT 'active'
                      CHECK (status IN ('active', 'needs_reauth', 'revoked')),
    status_reason     text,
    connected_at      timestamptz NOT NULL DEFAULT now(),
    refreshed_at      timestamptz,
    status_at         timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (vendor, user_id)
);
CREATE INDEX IF NOT EXISTS vendor_connections_vendor_user_idx
    ON biobridge.vendor_connections (vendor, vendor_user_id);

-- Where each pointer notification (a 'deferred' landed file) stands. States:
--   pending       not tried yet (or tried and due again at next_attempt_at)
--   fetched       its documents were landed (documents > 0); they load like pushed bodies
--   resolved_empty nothing to fetch: 404, an empty day, a PING (reason says which)
--   deleted       a deletion event: the rows it refers to were marked deleted (rows_deleted)
--   rate_limited  the vendor said 429: due again at next_attempt_at (Retry-After)
--   retry_later   5xx/timeouts outlived the retry policy: due again at next_attempt_at
--   needs_reauth  no usable connection (none, refresh refused, user revoked): retried once the
--                 user connects again
--   failed        a permanent refusal (bad request, bad client credentials): reason says why
CREATE TABLE IF NOT EXISTS biobridge.notifications (
    object_key      text PRIMARY KEY REFERENCES biobridge.landed_files (object_key),
    vendor          text        NOT NULL,
    vendor_user_id  text,
    state           text        NOT NULL DEFAULT 'pending'
                    CHECK (state IN ('pending', 'fetched', 'resolved_empty', 'deleted',
                                     'rate_limited', 'retry_later', 'needs_reauth', 'failed')),
    reason          text,
    documents       integer     NOT NULL DEFAULT 0,
    rows_deleted    integer     NOT NULL DEFAULT 0,
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    first_seen_at   timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    load_id         bigint REFERENCES biobridge.loads (load_id)
);
CREATE INDEX IF NOT EXISTS notifications_due_idx
    ON biobridge.notifications (next_attempt_at)
    WHERE state IN ('pending', 'rate_limited', 'retry_later', 'needs_reauth');

-- Each document landed for a notification: lineage row -> source_key (here) -> notification.
-- record_ref names the vendor record ("sleep/<uuid>") so a later deletion event finds its rows.
CREATE TABLE IF NOT EXISTS biobridge.fetched_documents (
    object_key       text PRIMARY KEY,
    notification_key text        NOT NULL REFERENCES biobridge.notifications (object_key),
    vendor           text        NOT NULL,
    resource         text        NOT NULL,
    record_ref       text,
    fetched_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS fetched_documents_notification_idx
    ON biobridge.fetched_documents (notification_key);
CREATE INDEX IF NOT EXISTS fetched_documents_record_idx
    ON biobridge.fetched_documents (vendor, record_ref);

-- A vendor deleted the record: the rows stay (the loader has no DELETE), marked, and readers use
-- public.current_biometric_events, which leaves them out.
ALTER TABLE public.biometric_events
    ADD COLUMN IF NOT EXISTS deleted_at timestamptz,
    ADD COLUMN IF NOT EXISTS deleted_by text;
CREATE OR REPLACE VIEW public.current_biometric_events AS
    SELECT id, user_id, device_type, metric_type, value, "timestamp", metadata, raw_data, unit,
           received_at, created_at, source_key, record_index, load_id
    FROM public.biometric_events WHERE deleted_at IS NULL;

-- What the fetch stage did in a run, by outcome (the run artifact shows the same numbers).
ALTER TABLE biobridge.loads ADD COLUMN IF NOT EXISTS fetch_counts jsonb NOT NULL DEFAULT '{}'::jsonb;
