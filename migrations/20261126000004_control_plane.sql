-- The control plane: integrations (a provider configured with OAuth app credentials) and
-- connections (one end user's account on that provider, with encrypted credentials).

-- Outgoing webhooks of the environment (auth events, sync results, async actions).
ALTER TABLE environments
    ADD COLUMN webhook_url TEXT,
    ADD COLUMN webhook_secret_encrypted BYTEA;

CREATE TABLE integrations (
    id                      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- Binds encrypted columns to this row (AES-GCM associated data); never changes.
    uuid                    UUID NOT NULL UNIQUE,
    environment_id          BIGINT NOT NULL REFERENCES environments (id) ON DELETE CASCADE,
    unique_key              TEXT NOT NULL CHECK (unique_key ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$'),
    provider                TEXT NOT NULL,
    display_name            TEXT,
    client_id               TEXT,
    client_secret_encrypted BYTEA,
    -- Comma-separated, as Nango's API exchanges them.
    scopes                  TEXT,
    webhook_secret_encrypted BYTEA,
    forward_webhooks        BOOLEAN NOT NULL DEFAULT true,
    custom                  JSONB NOT NULL DEFAULT '{}',
    created_at              TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at              TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (environment_id, unique_key)
);

CREATE TABLE connections (
    id                      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    uuid                    UUID NOT NULL UNIQUE,
    environment_id          BIGINT NOT NULL REFERENCES environments (id) ON DELETE CASCADE,
    integration_id          BIGINT NOT NULL REFERENCES integrations (id) ON DELETE CASCADE,
    connection_id           TEXT NOT NULL CHECK (length(connection_id) BETWEEN 1 AND 255),
    credentials_encrypted   BYTEA NOT NULL,
    -- Kept in clear so refreshes can be found without decrypting every row.
    credentials_expires_at  TIMESTAMPTZ,
    connection_config       JSONB NOT NULL DEFAULT '{}',
    metadata                JSONB,
    end_user                JSONB,
    tags                    JSONB NOT NULL DEFAULT '{}',
    webhook_url_override    TEXT,
    last_fetched_at         TIMESTAMPTZ,
    -- Token refresh bookkeeping: failures back off, and a run of them marks the connection.
    refresh_failures        INT NOT NULL DEFAULT 0,
    last_refresh_at         TIMESTAMPTZ,
    last_refresh_failure_at TIMESTAMPTZ,
    refresh_error           TEXT,
    created_at              TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at              TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (integration_id, connection_id)
);
CREATE INDEX connections_environment_idx ON connections (environment_id, created_at DESC, id DESC);
CREATE INDEX connections_end_user_idx ON connections (environment_id, (end_user ->> 'id'));
