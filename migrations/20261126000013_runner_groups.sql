-- Runner groups: customer code runs in runners isolated per customer. Each environment maps
-- to a group; each group has its own queue, its own runner function and its own database user
-- `lasso_runner_<group>`. Runner users belong to `lasso_runner`, which holds only the grants a
-- runner needs, and row-level security limits them to their group's environments, so a runner
-- can neither read nor change another group's connections, records or tasks, whatever a
-- message asks.
ALTER TABLE environments
    ADD COLUMN runner_group TEXT NOT NULL DEFAULT 'shared'
        CHECK (runner_group ~ '^[a-z0-9][a-z0-9_]{0,30}$');

-- Roles belong to the cluster, not the database: another database's migration may have made
-- it already, possibly at this very moment.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'lasso_runner') THEN
        CREATE ROLE lasso_runner NOLOGIN;
    END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;
END
$$;

-- The group a runner user serves, from its name; NULL for every other user.
CREATE FUNCTION lasso_runner_group() RETURNS text
    LANGUAGE sql STABLE
    AS $$ SELECT CASE WHEN current_user LIKE 'lasso\_runner\_%' THEN substr(current_user, 14) END $$;

GRANT USAGE ON SCHEMA queue, records, logs, webhooks TO lasso_runner;
GRANT SELECT ON environments, integrations, environment_variables, function_versions TO lasso_runner;
GRANT SELECT, UPDATE ON connections TO lasso_runner;
GRANT SELECT, INSERT, UPDATE, DELETE ON checkpoints TO lasso_runner;
GRANT SELECT, UPDATE ON queue.tasks TO lasso_runner;
GRANT SELECT, INSERT, UPDATE ON records.records TO lasso_runner;
GRANT SELECT, INSERT, DELETE ON records.run_seen TO lasso_runner;
GRANT SELECT, INSERT, UPDATE ON logs.operations, logs.messages TO lasso_runner;
GRANT SELECT, INSERT, UPDATE ON webhooks.deliveries TO lasso_runner;

-- Table owners (the api, scheduler and dispatcher user, which runs the migrations) are not
-- subject to these policies; runner users see only their group.
ALTER TABLE environments ENABLE ROW LEVEL SECURITY;
CREATE POLICY runner_group ON environments TO lasso_runner
    USING (runner_group = lasso_runner_group());

-- Tables scoped by environment.
CREATE FUNCTION lasso_runner_environment(bigint) RETURNS boolean
    LANGUAGE sql STABLE
    AS $$ SELECT EXISTS (SELECT 1 FROM environments WHERE id = $1) $$;

ALTER TABLE integrations ENABLE ROW LEVEL SECURITY;
CREATE POLICY runner_group ON integrations TO lasso_runner
    USING (lasso_runner_environment(environment_id));
ALTER TABLE connections ENABLE ROW LEVEL SECURITY;
CREATE POLICY runner_group ON connections TO lasso_runner
    USING (lasso_runner_environment(environment_id));
ALTER TABLE environment_variables ENABLE ROW LEVEL SECURITY;
CREATE POLICY runner_group ON environment_variables TO lasso_runner
    USING (lasso_runner_environment(environment_id));
ALTER TABLE function_versions ENABLE ROW LEVEL SECURITY;
CREATE POLICY runner_group ON function_versions TO lasso_runner
    USING (lasso_runner_environment(environment_id));
ALTER TABLE queue.tasks ENABLE ROW LEVEL SECURITY;
CREATE POLICY runner_group ON queue.tasks TO lasso_runner
    USING (lasso_runner_environment(environment_id));
ALTER TABLE webhooks.deliveries ENABLE ROW LEVEL SECURITY;
CREATE POLICY runner_group ON webhooks.deliveries TO lasso_runner
    USING (lasso_runner_environment(environment_id));
ALTER TABLE logs.operations ENABLE ROW LEVEL SECURITY;
CREATE POLICY runner_group ON logs.operations TO lasso_runner
    USING (lasso_runner_environment(environment_id));
ALTER TABLE logs.messages ENABLE ROW LEVEL SECURITY;
CREATE POLICY runner_group ON logs.messages TO lasso_runner
    USING (lasso_runner_environment(environment_id));

-- Tables scoped by connection.
CREATE FUNCTION lasso_runner_connection(bigint) RETURNS boolean
    LANGUAGE sql STABLE
    AS $$ SELECT EXISTS (SELECT 1 FROM connections WHERE id = $1) $$;

ALTER TABLE records.records ENABLE ROW LEVEL SECURITY;
CREATE POLICY runner_group ON records.records TO lasso_runner
    USING (lasso_runner_connection(connection_id));
ALTER TABLE checkpoints ENABLE ROW LEVEL SECURITY;
CREATE POLICY runner_group ON checkpoints TO lasso_runner
    USING (lasso_runner_connection(connection_id));

-- A full sync's seen set is keyed by its task.
ALTER TABLE records.run_seen ENABLE ROW LEVEL SECURITY;
CREATE POLICY runner_group ON records.run_seen TO lasso_runner
    USING (EXISTS (SELECT 1 FROM queue.tasks WHERE id = run_id));
