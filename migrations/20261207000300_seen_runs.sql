-- The mark of a run recording what it sees (a full sync run, or a trackDeletesStart/End window):
-- written before its first save, it holds the database snapshot of that moment, so the run
-- deletes only records written before it began, never one another writer (a webhook task)
-- saved while it ran. Unlogged like the seen set itself: crash recovery empties both, and a
-- run whose mark is gone deletes nothing, since what it did not see is then unknown.
CREATE UNLOGGED TABLE records.seen_runs (
    run_id      UUID PRIMARY KEY,
    -- The task recording it; when that task is no longer running, the scheduler purges the
    -- mark and the seen set (a runner that died could not).
    task_id     UUID NOT NULL,
    snapshot    pg_snapshot NOT NULL,
    -- A trackDeletesStart/End window, which later executions of the sync continue: kept while
    -- no task runs it (for up to 30 days), not purged with the task that opened it.
    spans_executions BOOLEAN NOT NULL DEFAULT false,
    started_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

GRANT SELECT, INSERT, UPDATE, DELETE ON records.seen_runs TO lasso_runner;
ALTER TABLE records.seen_runs ENABLE ROW LEVEL SECURITY;
CREATE POLICY runner_group ON records.seen_runs TO lasso_runner
    USING (EXISTS (SELECT 1 FROM queue.tasks WHERE id = task_id));

-- A seen set is its mark's run's (a window's id is not a task's).
DROP POLICY runner_group ON records.run_seen;
CREATE POLICY runner_group ON records.run_seen TO lasso_runner
    USING (EXISTS (SELECT 1 FROM records.seen_runs m WHERE m.run_id = run_seen.run_id));
