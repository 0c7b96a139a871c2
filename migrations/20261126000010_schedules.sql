-- Sync schedules: one per (connection, sync function). The scheduler turns due STARTED
-- schedules into sync tasks; the partial unique index on queue.tasks (schedule_id) keeps at
-- most one of a schedule's tasks active, so an overrunning sync skips ticks instead of piling
-- them up.
CREATE TYPE queue.schedule_state AS ENUM ('STARTED', 'PAUSED', 'DELETED');

CREATE TABLE queue.schedules (
    id                      UUID PRIMARY KEY,
    environment_id          BIGINT NOT NULL REFERENCES environments (id) ON DELETE CASCADE,
    connection_id           BIGINT NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    function_name           TEXT NOT NULL,
    state                   queue.schedule_state NOT NULL,
    -- The sync's own frequency as deployed (`runs`), kept up to date by every reconcile.
    frequency               TEXT NOT NULL,
    frequency_secs          BIGINT NOT NULL CHECK (frequency_secs >= 30),
    -- The connection's override (PUT /sync/update-connection-frequency); wins when set.
    frequency_override      TEXT,
    frequency_override_secs BIGINT CHECK (frequency_override_secs >= 30),
    next_execution_at       TIMESTAMPTZ NOT NULL,
    created_at              TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at              TIMESTAMPTZ NOT NULL DEFAULT now(),
    deleted_at              TIMESTAMPTZ,
    UNIQUE (connection_id, function_name),
    CHECK ((frequency_override IS NULL) = (frequency_override_secs IS NULL)),
    CHECK ((state = 'DELETED') = (deleted_at IS NOT NULL))
);
-- What the scheduler scans every tick: only started schedules.
CREATE INDEX schedules_due_idx ON queue.schedules (next_execution_at) WHERE state = 'STARTED';
CREATE INDEX schedules_environment_idx ON queue.schedules (environment_id, function_name);

-- A schedule's runs, newest first: its latest task (status) and last success (lastSyncDate).
CREATE INDEX tasks_schedule_history_idx ON queue.tasks (schedule_id, created_at DESC)
    WHERE schedule_id IS NOT NULL;

-- Time-ordered ids for rows created in SQL (schedules, scheduled tasks), like Uuid::now_v7:
-- 48 bits of Unix milliseconds over a random v4 uuid, with the version nibble set to 7.
CREATE FUNCTION queue.uuid_v7() RETURNS uuid
LANGUAGE sql VOLATILE PARALLEL SAFE AS $$
    SELECT encode(
        set_bit(set_bit(
            overlay(uuid_send(gen_random_uuid())
                    PLACING substring(int8send(floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint) FROM 3)
                    FROM 1 FOR 6),
            52, 1), 53, 1),
        'hex')::uuid
$$;
