//! Outcomes are not lost: a completion write that fails is retried while the task still
//! heartbeats, so an action that ran is not run again; and every run has an execution id,
//! the same for every attempt of one call, that scripts use as an idempotency key.

use lasso_runner::run::{Outcome, process_message};
use lasso_services::queue::{NewTask, TaskKind, TaskState, tasks};
use lasso_tests::fakehub::{Setup, run, setup, task, wait};
use serde_json::{Value, json};
use uuid::Uuid;

/// Inserts `new` DISPATCHED, as the dispatcher leaves it, but sends no message (the workers'
/// runner never sees it), and delivers its message to the runner as the runner queue would.
async fn deliver(s: &Setup, new: NewTask) -> (Uuid, lasso_services::Result<Outcome>) {
    let (task, _) = tasks::insert_dispatched(&s.ctx.db, &new, 100)
        .await
        .unwrap();
    assert_eq!(task.state, TaskState::Dispatched);
    let outcome = process_message(&s.ctx, &json!({ "task_id": task.id }).to_string()).await;
    (task.id, outcome)
}

#[tokio::test]
async fn an_action_whose_completion_write_fails_is_not_run_twice() {
    let s = setup(&[("LASSO_HEARTBEAT_SECS", "1".into())]).await;
    // The database refuses the first three writes that would end a task, as a dropped
    // connection or a failover would, while it still takes heartbeats.
    sqlx::raw_sql(
        "CREATE SEQUENCE test_completion_faults;
         CREATE FUNCTION test_fail_completion() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
            IF nextval('test_completion_faults') <= 3 THEN
                RAISE EXCEPTION 'injected fault: the completion write failed';
            END IF;
            RETURN NEW;
         END $$;
         CREATE TRIGGER test_fail_completion BEFORE UPDATE ON queue.tasks FOR EACH ROW
            WHEN (OLD.state = 'STARTED' AND NEW.state <> 'STARTED')
            EXECUTE FUNCTION test_fail_completion();",
    )
    .execute(&s.ctx.db)
    .await
    .unwrap();
    let issues_before = s.upstream.issues.lock().unwrap().len();
    let (id, outcome) = deliver(
        &s,
        task(
            &s,
            TaskKind::Action,
            "create-issue",
            Some(json!({"title": "exactly once"})),
        ),
    )
    .await;
    assert!(
        matches!(outcome, Ok(Outcome::Succeeded(done)) if done == id),
        "{outcome:?}"
    );
    let done = tasks::get(&s.ctx.db, id).await.unwrap().unwrap();
    assert_eq!(done.state, TaskState::Succeeded, "{:?}", done.error);
    assert_eq!(done.output.unwrap()["title"], "exactly once");
    assert_eq!(
        s.upstream.issues.lock().unwrap().len(),
        issues_before + 1,
        "the action ran once"
    );
    let attempts: i64 = sqlx::query_scalar("SELECT count(*) FROM queue.tasks WHERE retry_of = $1")
        .bind(id)
        .fetch_one(&s.ctx.db)
        .await
        .unwrap();
    assert_eq!(attempts, 0);
    s.workers.stop().await;
}

#[tokio::test]
async fn the_execution_id_is_the_same_for_every_attempt_of_one_call() {
    let s = setup(&[]).await;
    let mut first = task(&s, TaskKind::Action, "remember-execution", None);
    first.max_attempts = 2;
    let id = tasks::insert(&s.ctx.db, &[first]).await.unwrap()[0];
    let failed = wait(&s, id).await;
    assert_eq!(failed.state, TaskState::Failed, "{:?}", failed.output);
    let retry: Uuid = sqlx::query_scalar("SELECT id FROM queue.tasks WHERE retry_of = $1")
        .bind(id)
        .fetch_one(&s.ctx.db)
        .await
        .unwrap();
    let done = wait(&s, retry).await;
    assert_eq!(done.state, TaskState::Succeeded, "{:?}", done.error);
    let execution = Value::String(id.to_string());
    assert_eq!(
        done.output.unwrap(),
        json!({"first": execution, "now": execution})
    );

    // Another call is another execution.
    sqlx::query("UPDATE connections SET metadata = '{}'::jsonb WHERE id = $1")
        .bind(s.connection)
        .execute(&s.ctx.db)
        .await
        .unwrap();
    let other = run(&s, TaskKind::Action, "remember-execution", None).await;
    assert_eq!(other.state, TaskState::Failed);
    let metadata: Value = sqlx::query_scalar("SELECT metadata FROM connections WHERE id = $1")
        .bind(s.connection)
        .fetch_one(&s.ctx.db)
        .await
        .unwrap();
    assert_eq!(metadata, json!({"execution": other.id.to_string()}));
    s.workers.stop().await;
}
