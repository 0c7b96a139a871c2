-- Auth flows: connect sessions (short-lived tokens a backend hands to its frontend so an end user
-- can create or re-authorize a connection without the secret key) and OAuth sessions (the
-- server-side half of an authorization-code flow, found again by its `state`).

CREATE TABLE connect_sessions (
    id                      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- SHA-256 of the token: a database dump reveals no usable token. Tokens carry 256 bits of
    -- randomness, so a plain digest cannot be brute-forced.
    token_hash              BYTEA NOT NULL UNIQUE CHECK (octet_length(token_hash) = 32),
    environment_id          BIGINT NOT NULL REFERENCES environments (id) ON DELETE CASCADE,
    -- {id, email, display_name, tags, organization: {id, display_name}}; the connections this
    -- session creates belong to this end user.
    end_user                JSONB,
    -- Integration unique keys the session may connect; NULL allows every integration.
    allowed_integrations    TEXT[],
    -- Per integration unique key: {user_scopes, authorization_params, connection_config}.
    integrations_config_defaults JSONB NOT NULL DEFAULT '{}',
    -- Given to the connections this session creates.
    tags                    JSONB NOT NULL DEFAULT '{}',
    webhook_url_override    TEXT,
    -- A reconnect session re-authorizes this connection and no other.
    reconnect_connection_id BIGINT REFERENCES connections (id) ON DELETE CASCADE,
    created_at              TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at              TIMESTAMPTZ NOT NULL
);
CREATE INDEX connect_sessions_environment_idx ON connect_sessions (environment_id);
CREATE INDEX connect_sessions_expires_idx ON connect_sessions (expires_at);

CREATE TABLE oauth_sessions (
    id                      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- SHA-256 of the `state` sent to the provider (256 random bits).
    state_hash              BYTEA NOT NULL UNIQUE CHECK (octet_length(state_hash) = 32),
    environment_id          BIGINT NOT NULL REFERENCES environments (id) ON DELETE CASCADE,
    integration_id          BIGINT NOT NULL REFERENCES integrations (id) ON DELETE CASCADE,
    connection_id           TEXT NOT NULL CHECK (length(connection_id) BETWEEN 1 AND 255),
    -- PKCE code verifier, AES-256-GCM sealed; NULL when the provider disables PKCE.
    code_verifier_encrypted BYTEA,
    -- Sent again with the token request, which must repeat it exactly.
    redirect_uri            TEXT NOT NULL,
    -- Deleting (revoking) the connect session abandons the flows it started.
    connect_session_id      BIGINT REFERENCES connect_sessions (id) ON DELETE CASCADE,
    -- Connection config given at authorize time (params, session defaults, user scope).
    connection_config       JSONB NOT NULL DEFAULT '{}',
    created_at              TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at              TIMESTAMPTZ NOT NULL,
    -- Set by the one callback that uses the state; a replayed state finds it set.
    consumed_at             TIMESTAMPTZ
);
CREATE INDEX oauth_sessions_expires_idx ON oauth_sessions (expires_at);
