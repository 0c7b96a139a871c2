-- Environments own everything else: every API call is scoped to the environment of its key.
CREATE TABLE environments (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    uuid        UUID NOT NULL UNIQUE,
    name        TEXT NOT NULL UNIQUE CHECK (name ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Secret keys are stored as SHA-256 digests: a database dump reveals no usable key.
-- Keys carry 256 bits of randomness, so a plain digest cannot be brute-forced.
CREATE TABLE environment_keys (
    key_hash        BYTEA PRIMARY KEY CHECK (octet_length(key_hash) = 32),
    environment_id  BIGINT NOT NULL REFERENCES environments (id) ON DELETE CASCADE,
    hint            TEXT NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    revoked_at      TIMESTAMPTZ
);
CREATE INDEX environment_keys_environment_idx ON environment_keys (environment_id);

-- Values are AES-256-GCM ciphertexts (see shared/src/crypto.rs).
CREATE TABLE environment_variables (
    environment_id  BIGINT NOT NULL REFERENCES environments (id) ON DELETE CASCADE,
    name            TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 256),
    value_encrypted BYTEA NOT NULL,
    PRIMARY KEY (environment_id, name)
);
