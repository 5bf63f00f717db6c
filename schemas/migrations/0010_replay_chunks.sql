-- Version 10: chunked replays and backfills that resume where they stopped (issue 13).
--
-- A long window is split into chunks (one vendor, one span of received_at). The same command
-- finds its unfinished run by `command_key` and carries on with the chunks not done yet. A chunk
-- is claimed by a transaction that locks its row (FOR UPDATE SKIP LOCKED) for as long as the
-- chunk runs and marks it done in that same transaction: if the process stops, the lock goes
-- with its connection and the chunk is simply not done; two processes never run one chunk.
CREATE TABLE IF NOT EXISTS biobridge.replay_runs (
    run_id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    command_key    text        NOT NULL,
    mode           text        NOT NULL CHECK (mode IN ('backfill', 'replay')),
    vendors        text[]      NOT NULL,
    received_from  timestamptz NOT NULL,
    received_until timestamptz NOT NULL,
    replay_states  text[]      NOT NULL,
    chunk_hours    integer     NOT NULL CHECK (chunk_hours > 0),
    created_at     timestamptz NOT NULL DEFAULT now(),
    finished_at    timestamptz
);
-- One unfinished run per command: the same command resumes it, a finished one starts afresh.
CREATE UNIQUE INDEX IF NOT EXISTS replay_runs_open_command_idx
    ON biobridge.replay_runs (command_key) WHERE finished_at IS NULL;

CREATE TABLE IF NOT EXISTS biobridge.replay_chunks (
    run_id       bigint      NOT NULL REFERENCES biobridge.replay_runs (run_id),
    vendor       text        NOT NULL,
    chunk_from   timestamptz NOT NULL,
    chunk_until  timestamptz NOT NULL,
    state        text        NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'done')),
    -- How often the chunk was marked done: 1 once it is, never more (the test of issue 13).
    completions  integer     NOT NULL DEFAULT 0,
    load_id      bigint REFERENCES biobridge.loads (load_id),
    files_read   integer     NOT NULL DEFAULT 0,
    rows_written bigint      NOT NULL DEFAULT 0,
    finished_at  timestamptz,
    PRIMARY KEY (run_id, vendor, chunk_from)
);
