-- The Postgres log sink (the local default; OpenSearch on AWS). Operations are the unit a user
-- searches (a sync run, an action, a proxy call, ...); messages hang under them.
CREATE SCHEMA logs;

CREATE TABLE logs.operations (
    id              UUID PRIMARY KEY,
    environment_id  BIGINT NOT NULL,
    kind            TEXT NOT NULL,
    state           TEXT NOT NULL,
    integration     TEXT,
    connection      TEXT,
    script          TEXT,
    started_at      TIMESTAMPTZ NOT NULL,
    ended_at        TIMESTAMPTZ,
    error           TEXT,
    meta            JSONB NOT NULL DEFAULT '{}'
);
CREATE INDEX operations_search_idx ON logs.operations (environment_id, started_at DESC, id DESC);

CREATE TABLE logs.messages (
    id              UUID PRIMARY KEY,
    operation_id    UUID NOT NULL,
    environment_id  BIGINT NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL,
    level           TEXT NOT NULL,
    kind            TEXT NOT NULL,
    message         TEXT NOT NULL,
    meta            JSONB NOT NULL DEFAULT '{}'
);
CREATE INDEX messages_operation_idx ON logs.messages (operation_id, created_at, id);
