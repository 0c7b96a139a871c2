-- The dispatcher claims ready tasks group by group (a per-group concurrency limit, fair across
-- groups): it walks the groups that have CREATED tasks and takes each one's oldest, which this
-- index serves in one probe per group. It replaces the global (created_at, id) order.
DROP INDEX queue.tasks_ready_idx;
CREATE INDEX tasks_ready_idx ON queue.tasks (group_key, created_at, id) WHERE state = 'CREATED';
