-- Dashboard sessions (functions/api/src/web/session.rs). The cookie holds a random token;
-- only its SHA-256 digest is stored, so a database dump opens no session.
CREATE TABLE web_sessions (
    token_hash      BYTEA PRIMARY KEY CHECK (octet_length(token_hash) = 32),
    environment_id  BIGINT NOT NULL REFERENCES environments (id) ON DELETE CASCADE,
    csrf_token      TEXT NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at      TIMESTAMPTZ NOT NULL
);
CREATE INDEX web_sessions_expires_idx ON web_sessions (expires_at);

-- Secret key rotation keeps the old key for a grace period: its `revoked_at` is set in the
-- future, and a key is live until then. Looking up an environment's live keys stays cheap.
COMMENT ON COLUMN environment_keys.revoked_at IS
    'when the key stops working; in the future during a rotation''s grace period';
