-- The task queue. Every state change is one conditional UPDATE (WHERE state = ...), so a
-- duplicate delivery or a crashed worker can never run a task twice or lose it.
CREATE SCHEMA queue;

CREATE TYPE queue.task_state AS ENUM (
    'CREATED', 'DISPATCHED', 'STARTED', 'SUCCEEDED', 'FAILED', 'EXPIRED', 'CANCELLED'
);

CREATE TYPE queue.task_kind AS ENUM ('sync', 'action', 'webhook', 'on_event', 'script');

CREATE TABLE queue.tasks (
    id                      UUID PRIMARY KEY,  -- uuid v7: time-ordered
    environment_id          BIGINT NOT NULL REFERENCES environments (id) ON DELETE CASCADE,
    kind                    queue.task_kind NOT NULL,
    -- Concurrency is limited per group key (one per environment by default).
    group_key               TEXT NOT NULL,
    name                    TEXT NOT NULL,
    payload                 JSONB NOT NULL,
    state                   queue.task_state NOT NULL DEFAULT 'CREATED',
    attempt                 INT NOT NULL DEFAULT 1 CHECK (attempt >= 1),
    max_attempts            INT NOT NULL DEFAULT 1 CHECK (max_attempts >= 1),
    retry_of                UUID REFERENCES queue.tasks (id) ON DELETE SET NULL,
    schedule_id             UUID,
    created_to_started_secs INT NOT NULL DEFAULT 300 CHECK (created_to_started_secs > 0),
    started_to_completed_secs INT NOT NULL DEFAULT 3600 CHECK (started_to_completed_secs > 0),
    heartbeat_timeout_secs  INT NOT NULL DEFAULT 120 CHECK (heartbeat_timeout_secs > 0),
    created_at              TIMESTAMPTZ NOT NULL DEFAULT now(),
    dispatched_at           TIMESTAMPTZ,
    dispatch_count          INT NOT NULL DEFAULT 0,
    started_at              TIMESTAMPTZ,
    last_heartbeat_at       TIMESTAMPTZ,
    completed_at            TIMESTAMPTZ,
    output                  JSONB,
    error                   JSONB
);

-- Claim order for the dispatcher; small because finished tasks leave it.
CREATE INDEX tasks_ready_idx ON queue.tasks (created_at, id) WHERE state = 'CREATED';
-- Expiry scans only look at tasks that are still in flight.
CREATE INDEX tasks_in_flight_idx ON queue.tasks (state, group_key)
    WHERE state IN ('DISPATCHED', 'STARTED');
CREATE INDEX tasks_environment_idx ON queue.tasks (environment_id, created_at DESC);
-- At most one active task per schedule.
CREATE UNIQUE INDEX tasks_one_active_per_schedule_idx ON queue.tasks (schedule_id)
    WHERE schedule_id IS NOT NULL AND state IN ('CREATED', 'DISPATCHED', 'STARTED');
