//! Deployed TypeScript syncs and actions running in the sandbox against a local fake provider:
//! link-header and cursor pagination into the records store, dedupe across runs, updates and
//! full-sync deletions, actions with output and ActionError, and hostile scripts contained with
//! the runner serving the next task.

use lasso_services::queue::{TaskKind, TaskState, tasks};
use lasso_services::records::{self, Scope};
use lasso_tests::fakehub::{run, setup};
use serde_json::{Value, json};

fn results(task: &tasks::Task, model: &str) -> (u64, u64, u64) {
    assert_eq!(task.state, TaskState::Succeeded, "{:?}", task.error);
    let r = &task.output.as_ref().unwrap()["results"][model];
    let n = |k: &str| r[k].as_u64().unwrap_or(0);
    (n("added"), n("updated"), n("deleted"))
}

#[tokio::test]
async fn a_paginating_sync_dedupes_updates_and_deletes() {
    let s = setup(&[("LASSO_SCRIPT_TIMEOUT_SECS", "120".into())]).await;
    let issues = Scope::new(s.connection, "Issue", None);

    let first = run(&s, TaskKind::Sync, "issues", None).await;
    assert_eq!(results(&first, "Issue"), (10_000, 0, 0));
    assert_eq!(records::count(&s.ctx.db, &issues).await.unwrap(), 10_000);
    // The key went where the catalog says, on every page.
    let auth = s.upstream.auth.lock().unwrap().clone();
    assert_eq!(auth.len(), 100);
    assert!(auth.iter().all(|a| a == "Bearer fk_live_secret"));
    let stamp = || async {
        sqlx::query_as::<_, (chrono::DateTime<chrono::Utc>,)>(
            "SELECT max(updated_at) FROM records.records",
        )
        .fetch_one(&s.ctx.db)
        .await
        .unwrap()
        .0
    };
    let before = stamp().await;

    let again = run(&s, TaskKind::Sync, "issues", None).await;
    assert_eq!(results(&again, "Issue"), (0, 0, 0));
    assert_eq!(stamp().await, before, "nothing was written");

    {
        let mut upstream = s.upstream.issues.lock().unwrap();
        for i in (0..1000).step_by(100) {
            upstream[i]["title"] = json!("renamed upstream");
        }
    }
    let changed = run(&s, TaskKind::Sync, "issues", None).await;
    assert_eq!(results(&changed, "Issue"), (0, 10, 0));

    s.upstream.issues.lock().unwrap().drain(5000..5005);
    let pruned = run(&s, TaskKind::Sync, "issues", None).await;
    assert_eq!(results(&pruned, "Issue"), (0, 0, 5));
    assert_eq!(records::count(&s.ctx.db, &issues).await.unwrap(), 9_995);

    let tickets = run(&s, TaskKind::Sync, "tickets", None).await;
    assert_eq!(results(&tickets, "Ticket"), (1_000, 0, 0));
    let checkpoint = lasso_services::checkpoints::get(&s.ctx.db, s.connection, "tickets")
        .await
        .unwrap();
    assert_eq!(checkpoint, Some(json!({"done": true})));
    s.workers.stop().await;
}

#[tokio::test]
async fn actions_return_output_or_their_action_error() {
    let s = setup(&[("LASSO_SCRIPT_TIMEOUT_SECS", "30".into())]).await;
    let created = run(
        &s,
        TaskKind::Action,
        "create-issue",
        Some(json!({"title": "From an action"})),
    )
    .await;
    assert_eq!(created.state, TaskState::Succeeded, "{:?}", created.error);
    assert_eq!(
        created.output,
        Some(json!({"id": "110000", "title": "From an action", "state": "open"}))
    );
    let refused = run(&s, TaskKind::Action, "refuse", None).await;
    assert_eq!(refused.state, TaskState::Failed);
    let error = refused.error.unwrap();
    assert_eq!(error["kind"], "action_error");
    assert_eq!(
        error["payload"],
        json!({"code": "duplicate", "message": "an issue with this title exists"})
    );
    let wrong = run(&s, TaskKind::Action, "wrong-model", None).await;
    assert_eq!(wrong.state, TaskState::Failed);
    assert!(
        wrong.error.unwrap()["message"]
            .as_str()
            .unwrap()
            .contains("`Unheard` is not an output")
    );
    s.workers.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_scripts_are_contained_and_the_runner_carries_on() {
    // A short deadline, so the loops and the promise that never settles end quickly.
    let s = setup(&[("LASSO_SCRIPT_TIMEOUT_SECS", "2".into())]).await;
    for (function, kind) in [
        ("spin", "timeout"),
        ("hog-memory", "out_of_memory"),
        ("never-settle", "timeout"),
        ("recurse", "exception"),
    ] {
        let task = run(&s, TaskKind::Action, function, None).await;
        assert_eq!(task.state, TaskState::Failed, "{function}");
        let error = task.error.unwrap();
        assert_eq!(error["kind"], kind, "{function}: {error}");
        if function == "recurse" {
            assert!(
                error["stack"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("recurse.ts"),
                "{error}"
            );
        }
        // The next task runs normally on the same runner.
        let next = run(
            &s,
            TaskKind::Action,
            "create-issue",
            Some(json!({"title": function})),
        )
        .await;
        assert_eq!(
            next.state,
            TaskState::Succeeded,
            "after {function}: {:?}",
            next.error
        );
    }
    let shout = run(&s, TaskKind::Action, "shout", None).await;
    assert_eq!(shout.state, TaskState::Succeeded, "{:?}", shout.error);
    s.workers.stop().await;
}

#[tokio::test]
async fn dryrun_reports_what_a_sync_would_save_and_saves_nothing() {
    let s = setup(&[("LASSO_SCRIPT_TIMEOUT_SECS", "120".into())]).await;
    let project = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/fakehub-project");
    let options = |function: &str, input: Option<Value>| lasso_cli::dryrun::Options {
        dir: project.clone(),
        function: function.into(),
        connection_id: "acme".into(),
        integration: None,
        input,
        host: s.api.base.clone(),
        secret_key: s.api.key.clone(),
        limits: lasso_sandbox::Limits::default(),
    };
    let report = lasso_cli::dryrun::run(options("issues", None))
        .await
        .unwrap();
    assert!(matches!(report.output, Some(Ok(_))), "{:?}", report.output);
    assert_eq!(report.saved["Issue"].len(), 10_000);
    assert_eq!(
        report.saved["Issue"][0],
        json!({"id": "1", "title": "Issue 1", "state": "open"})
    );
    let issues = Scope::new(s.connection, "Issue", None);
    assert_eq!(
        records::count(&s.ctx.db, &issues).await.unwrap(),
        0,
        "a dry run saves nothing"
    );

    let report = lasso_cli::dryrun::run(options("tickets", None))
        .await
        .unwrap();
    assert_eq!(report.saved["Ticket"].len(), 1_000);
    assert_eq!(report.checkpoint, Some(json!({"done": true})));
    assert_eq!(
        lasso_services::checkpoints::get(&s.ctx.db, s.connection, "tickets")
            .await
            .unwrap(),
        None
    );

    let report = lasso_cli::dryrun::run(options("refuse", None))
        .await
        .unwrap();
    let error = report.output.unwrap().unwrap_err();
    assert_eq!(
        error.payload,
        Some(json!({"code": "duplicate", "message": "an issue with this title exists"}))
    );
    let report = lasso_cli::dryrun::run(options("wrong-model", None))
        .await
        .unwrap();
    assert!(
        report
            .output
            .unwrap()
            .unwrap_err()
            .message
            .contains("Unheard")
    );
    assert!(
        lasso_cli::dryrun::run(options("no-such-function", None))
            .await
            .is_err()
    );
    s.workers.stop().await;
}
