-- A runner records a failed action's next attempt (X-Max-Retries) in the statement that fails
-- it, so it inserts tasks. Row-level security (migration 13) checks new rows against the same
-- policy as reads: a runner can only add tasks to its own group's environments.
GRANT INSERT ON queue.tasks TO lasso_runner;
