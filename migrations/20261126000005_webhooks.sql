-- Outgoing webhooks: an outbox. A delivery is tried at once and, if that fails, again by the
-- scheduler with exponential backoff until it succeeds or its attempts run out.
CREATE SCHEMA webhooks;

CREATE TYPE webhooks.delivery_state AS ENUM ('PENDING', 'DELIVERED', 'FAILED');

CREATE TABLE webhooks.deliveries (
    id              UUID PRIMARY KEY,
    environment_id  BIGINT NOT NULL REFERENCES environments (id) ON DELETE CASCADE,
    url             TEXT NOT NULL,
    -- The exact bytes that are signed and sent.
    body            TEXT NOT NULL,
    state           webhooks.delivery_state NOT NULL DEFAULT 'PENDING',
    attempts        INT NOT NULL DEFAULT 0,
    max_attempts    INT NOT NULL DEFAULT 8,
    next_attempt_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_status     INT,
    last_error      TEXT,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    delivered_at    TIMESTAMPTZ
);
CREATE INDEX deliveries_due_idx ON webhooks.deliveries (next_attempt_at) WHERE state = 'PENDING';
