-- Actions: the api waits for an action task by LISTEN/NOTIFY. A trigger rather than the
-- completing statements sends the notification, so every way a task reaches a terminal state
-- (succeed, fail, expiry, cancellation, whoever writes it) wakes the waiter, in the same
-- transaction as the change. Only actions have waiters, so other kinds pay nothing.
CREATE FUNCTION queue.notify_action_done() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('lasso_task_done', NEW.id::text);
    RETURN NULL;
END
$$;

CREATE TRIGGER tasks_action_done
    AFTER UPDATE OF state ON queue.tasks
    FOR EACH ROW
    WHEN (NEW.kind = 'action'
          AND NEW.state IN ('SUCCEEDED', 'FAILED', 'EXPIRED', 'CANCELLED')
          AND OLD.state IS DISTINCT FROM NEW.state)
    EXECUTE FUNCTION queue.notify_action_done();

-- An attempt has at most one retry (so creating it is idempotent), and a retry chain is
-- walked from an attempt to the next one by this index.
CREATE UNIQUE INDEX tasks_retry_of_idx ON queue.tasks (retry_of) WHERE retry_of IS NOT NULL;
