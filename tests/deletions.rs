//! Deletion detection deletes only what a full run could have seen: not records another
//! writer (a webhook task) saved while the run was under way, nothing when the database lost
//! the run's seen set (an unlogged table is emptied by crash recovery), and a run that died
//! leaves no seen set behind.

use lasso_services::queue::{TaskKind, TaskState, tasks};
use lasso_services::records::{self, Scope};
use lasso_tests::fakehub::{Setup, queue, run, setup, task, wait};
use serde_json::json;
use uuid::Uuid;

/// The fake provider with 300 issues (three pages of the sync) and a first full run done.
async fn synced() -> (Setup, Scope) {
    let s = setup(&[]).await;
    s.upstream.issues.lock().unwrap().truncate(300);
    let scope = Scope::new(s.connection, "Issue", None);
    let first = run(&s, TaskKind::Sync, "issues", None).await;
    assert_eq!(first.state, TaskState::Succeeded, "{:?}", first.error);
    assert_eq!(records::count(&s.ctx.db, &scope).await.unwrap(), 300);
    (s, scope)
}

/// Starts a full run of `issues` and returns once it has saved its first page and asked for
/// the second, which the provider holds until `s.upstream.release`.
async fn run_held_at_page_two(s: &Setup) -> Uuid {
    *s.upstream.hold_page.lock().unwrap() = Some(2);
    let id = queue(s, TaskKind::Sync, "issues", None).await;
    s.upstream.held.notified().await;
    id
}

async fn live(s: &Setup, external_id: &str) -> bool {
    sqlx::query_scalar(
        "SELECT deleted_at IS NULL FROM records.records WHERE model = 'Issue' AND external_id = $1",
    )
    .bind(external_id)
    .fetch_one(&s.ctx.db)
    .await
    .unwrap()
}

#[tokio::test]
async fn records_another_writer_saved_during_a_full_run_are_not_deleted() {
    let (s, scope) = synced().await;
    let id = run_held_at_page_two(&s).await;
    // A webhook task saves a record while the run is under way: the listing the run reads
    // never had it, so the run cannot have seen it.
    records::save(
        &s.ctx.db,
        &scope,
        &[json!({"id": "from-webhook", "title": "pushed", "state": "open"})],
        None,
    )
    .await
    .unwrap();
    s.upstream.release.notify_one();
    let done = wait(&s, id).await;
    assert_eq!(done.state, TaskState::Succeeded, "{:?}", done.error);
    assert!(
        live(&s, "from-webhook").await,
        "the full run deleted a record written during it"
    );
    assert_eq!(records::count(&s.ctx.db, &scope).await.unwrap(), 301);
    s.workers.stop().await;
}

#[tokio::test]
async fn a_full_run_whose_seen_set_the_database_lost_deletes_nothing() {
    let (s, scope) = synced().await;
    let id = run_held_at_page_two(&s).await;
    // What crash recovery does to unlogged tables (the whole server restarting would also
    // take down every other test's database): each is reset to empty.
    let unlogged: Vec<String> = sqlx::query_scalar(
        "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c
         JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE c.relpersistence = 'u' AND c.relkind IN ('r', 'p')",
    )
    .fetch_all(&s.ctx.db)
    .await
    .unwrap();
    assert!(!unlogged.is_empty());
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "TRUNCATE {}",
        unlogged.join(", ")
    )))
    .execute(&s.ctx.db)
    .await
    .unwrap();
    s.upstream.release.notify_one();
    let done = wait(&s, id).await;
    assert_eq!(done.state, TaskState::Succeeded, "{:?}", done.error);
    assert_eq!(
        records::count(&s.ctx.db, &scope).await.unwrap(),
        300,
        "the run deleted records it saw before the database lost its seen set"
    );
    let output = done.output.unwrap();
    assert!(
        output["deletions_skipped"]
            .as_str()
            .is_some_and(|why| why.contains("seen set")),
        "{output}"
    );

    // The next full run detects deletions again.
    s.upstream.issues.lock().unwrap().truncate(295);
    let next = run(&s, TaskKind::Sync, "issues", None).await;
    assert_eq!(next.state, TaskState::Succeeded, "{:?}", next.error);
    assert_eq!(records::count(&s.ctx.db, &scope).await.unwrap(), 295);
    s.workers.stop().await;
}

#[tokio::test]
async fn a_dead_runs_seen_set_is_purged() {
    let s = setup(&[]).await;
    let ctx = &s.ctx;
    let scope = Scope::new(s.connection, "Issue", None);
    // A run under way, as a runner starts one: inserted DISPATCHED (no message goes to the
    // workers' runner), then STARTED.
    let (started, _) =
        tasks::insert_dispatched(&ctx.db, &task(&s, TaskKind::Sync, "issues", None), 100)
            .await
            .unwrap();
    let id = started.id;
    sqlx::query(
        "UPDATE queue.tasks SET state = 'STARTED', started_at = now(), last_heartbeat_at = now()
         WHERE id = $1 AND state = 'DISPATCHED'",
    )
    .bind(id)
    .execute(&ctx.db)
    .await
    .unwrap();
    let page: Vec<_> = (1..=3)
        .map(|n| json!({"id": n.to_string(), "title": "t", "state": "open"}))
        .collect();
    records::save(&ctx.db, &scope, &page, Some(id))
        .await
        .unwrap();
    let seen = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM records.run_seen WHERE run_id = $1")
            .bind(id)
            .fetch_one(&ctx.db)
            .await
            .unwrap()
    };
    assert_eq!(seen().await, 3);
    // Its runner dies: no more heartbeats, and nothing of the run's own clean-up.
    sqlx::query(
        "UPDATE queue.tasks SET last_heartbeat_at = now() - interval '1 hour' WHERE id = $1",
    )
    .bind(id)
    .execute(&ctx.db)
    .await
    .unwrap();
    lasso_services::scheduler::tick(ctx).await.unwrap();
    let expired = tasks::get(&ctx.db, id).await.unwrap().unwrap();
    assert_eq!(expired.state, TaskState::Expired);
    assert_eq!(seen().await, 0, "the dead run's seen set is still there");
    s.workers.stop().await;
}

#[tokio::test]
async fn an_open_deletion_window_outlives_the_task_that_opened_it() {
    let s = setup(&[]).await;
    let ctx = &s.ctx;
    let scope = Scope::new(s.connection, "Issue", None);
    // trackDeletesStart in one execution (a task that has ended since), trackDeletesEnd in a
    // later one: between the two no task runs the window, and the purge must leave it be.
    let (window, opener) = (Uuid::new_v4(), Uuid::new_v4());
    records::begin_window(&ctx.db, window, opener)
        .await
        .unwrap();
    let page: Vec<_> = (1..=2)
        .map(|n| json!({"id": n.to_string(), "title": "t", "state": "open"}))
        .collect();
    records::save(&ctx.db, &scope, &page, Some(window))
        .await
        .unwrap();
    lasso_services::scheduler::tick(ctx).await.unwrap();
    let seen: i64 = sqlx::query_scalar("SELECT count(*) FROM records.run_seen WHERE run_id = $1")
        .bind(window)
        .fetch_one(&ctx.db)
        .await
        .unwrap();
    assert_eq!(seen, 2, "the purge took an open window's seen set");
    let deleted = records::delete_unseen_keys(&ctx.db, &scope, window)
        .await
        .unwrap();
    assert!(deleted.is_some(), "the window's mark is gone");
    records::forget_run(&ctx.db, window).await.unwrap();
    s.workers.stop().await;
}
