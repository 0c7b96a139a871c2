-- Deployed functions (syncs, actions, on-event scripts): one row per deployed version of a
-- function of an integration. Bundles live in the script store under their content hash;
-- old versions stay for history and rollback, and exactly one version of each function is
-- active while it is deployed.
CREATE TABLE function_versions (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    environment_id  BIGINT NOT NULL REFERENCES environments (id) ON DELETE CASCADE,
    integration_id  BIGINT NOT NULL REFERENCES integrations (id) ON DELETE CASCADE,
    name            TEXT NOT NULL CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9_-]{0,254}$'),
    type            TEXT NOT NULL CHECK (type IN ('sync', 'action', 'on-event')),
    bundle_key      TEXT NOT NULL,
    bundle_sha256   TEXT NOT NULL CHECK (bundle_sha256 ~ '^[0-9a-f]{64}$'),
    -- The parsed configuration (scripts::FunctionConfig): frequency, sync type, models,
    -- endpoints, scopes, webhook subscriptions, version.
    config          JSONB NOT NULL,
    deployed_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    active          BOOLEAN NOT NULL DEFAULT true,
    -- When a later deploy replaced or removed this version.
    deactivated_at  TIMESTAMPTZ,
    CHECK (active = (deactivated_at IS NULL))
);
CREATE UNIQUE INDEX function_versions_one_active_idx
    ON function_versions (integration_id, type, name) WHERE active;
CREATE INDEX function_versions_history_idx
    ON function_versions (integration_id, type, name, deployed_at DESC, id DESC);
CREATE INDEX function_versions_environment_idx
    ON function_versions (environment_id) WHERE active;
