-- What the rest of Nango's script SDK needs: script locks, and the runner's rights to the
-- syncs scripts trigger and start.

-- Locks scripts take with nango.tryAcquireLock / releaseLock: one holder (a task) per key of an
-- environment, until it releases the lock, its run ends, or the lock expires.
CREATE TABLE script_locks (
    environment_id  BIGINT NOT NULL REFERENCES environments (id) ON DELETE CASCADE,
    key             TEXT NOT NULL CHECK (length(key) BETWEEN 1 AND 255),
    owner           UUID NOT NULL,
    expires_at      TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (environment_id, key)
);
CREATE INDEX script_locks_owner_idx ON script_locks (owner);

GRANT SELECT, INSERT, UPDATE, DELETE ON script_locks TO lasso_runner;
ALTER TABLE script_locks ENABLE ROW LEVEL SECURITY;
CREATE POLICY runner_group ON script_locks TO lasso_runner
    USING (lasso_runner_environment(environment_id));

-- Scripts trigger and start syncs of their environment (nango.triggerSync / startSync): a
-- runner reads and updates schedules, and a run triggered with `emptyCache` removes the
-- records it will save again. Row-level security keeps both to the runner's group.
GRANT SELECT, UPDATE ON queue.schedules TO lasso_runner;
ALTER TABLE queue.schedules ENABLE ROW LEVEL SECURITY;
CREATE POLICY runner_group ON queue.schedules TO lasso_runner
    USING (lasso_runner_environment(environment_id));
GRANT DELETE ON records.records TO lasso_runner;
