//! Deployed TypeScript syncs and actions running in the sandbox against a local fake provider:
//! link-header and cursor pagination into the records store, dedupe across runs, updates and
//! full-sync deletions, actions with output and ActionError, and hostile scripts contained with
//! the runner serving the next task.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use lasso_cli::workers::Workers;
use lasso_shared::queue::{NewTask, TaskKind, TaskState, tasks};
use lasso_shared::records::{self, Scope};
use lasso_shared::scripts::{self, DeployRequest};
use lasso_shared::{Context, environments};
use lasso_tests::*;
use serde_json::{Value, json};
use uuid::Uuid;

#[derive(Default)]
struct Upstream {
    issues: Mutex<Vec<Value>>,
    tickets: Mutex<Vec<Value>>,
    /// Authorization headers the provider saw.
    auth: Mutex<Vec<String>>,
}

#[derive(serde::Deserialize)]
struct PageQuery {
    page: Option<usize>,
    per_page: Option<usize>,
    cursor: Option<String>,
}

async fn list_issues(
    State(up): State<Arc<Upstream>>,
    headers: HeaderMap,
    Query(q): Query<PageQuery>,
) -> impl IntoResponse {
    up.auth.lock().unwrap().push(
        headers
            .get("authorization")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default(),
    );
    let host = headers.get("host").unwrap().to_str().unwrap().to_string();
    let per_page = q.per_page.unwrap_or(30);
    let page = q.page.unwrap_or(1);
    let issues = up.issues.lock().unwrap().clone();
    let chunk: Vec<Value> = issues
        .iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .cloned()
        .collect();
    let mut response_headers = HeaderMap::new();
    if page * per_page < issues.len() {
        let next = format!(
            "<http://{host}/issues?per_page={per_page}&page={}>; rel=\"next\"",
            page + 1
        );
        response_headers.insert("link", next.parse().unwrap());
    }
    (response_headers, Json(Value::Array(chunk)))
}

async fn create_issue(State(up): State<Arc<Upstream>>, Json(body): Json<Value>) -> Json<Value> {
    let mut issues = up.issues.lock().unwrap();
    let issue = json!({"number": issues.len() + 100_000, "title": body["title"], "state": "open"});
    issues.push(issue.clone());
    Json(issue)
}

async fn list_tickets(State(up): State<Arc<Upstream>>, Query(q): Query<PageQuery>) -> Json<Value> {
    let tickets = up.tickets.lock().unwrap().clone();
    let start: usize = q.cursor.as_deref().map(|c| c.parse().unwrap()).unwrap_or(0);
    let end = (start + 250).min(tickets.len());
    let next = (end < tickets.len()).then(|| end.to_string());
    Json(json!({"tickets": tickets[start..end], "next_cursor": next}))
}

struct Setup {
    ctx: Context,
    api: Api,
    env_id: i64,
    connection: i64,
    upstream: Arc<Upstream>,
    workers: Workers,
}

async fn setup(script_timeout_secs: u32) -> Setup {
    let upstream = Arc::new(Upstream::default());
    *upstream.issues.lock().unwrap() = (1..=10_000)
        .map(|n| json!({"number": n, "title": format!("Issue {n}"), "state": "open"}))
        .collect();
    *upstream.tickets.lock().unwrap() = (0..1_000)
        .map(|n| json!({"id": format!("t{n}"), "subject": format!("Ticket {n}")}))
        .collect();
    let base = serve(
        Router::new()
            .route("/issues", get(list_issues).post(create_issue))
            .route("/tickets", get(list_tickets))
            .with_state(upstream.clone()),
    )
    .await;
    let providers = providers_file(&format!(
        "fakehub:\n  display_name: Fakehub\n  auth_mode: API_KEY\n  docs: https://example.com\n  \
         proxy:\n    base_url: {base}\n    headers:\n      authorization: Bearer ${{apiKey}}\n    \
         paginate:\n      type: link\n      limit_name_in_request: per_page\n      link_rel_in_response_header: next\n"
    ));
    let db = fresh_database().await;
    let ctx = Context::build(
        config(
            &db,
            &[
                ("LASSO_PROVIDERS_FILE", providers.display().to_string()),
                ("LASSO_SCRIPT_TIMEOUT_SECS", script_timeout_secs.to_string()),
            ],
        ),
        None,
    )
    .unwrap();
    let (env, key) = environments::create(&ctx.db, "scripts").await.unwrap();
    let api = Api::new(&serve_api(ctx.clone()).await, &key);
    assert_eq!(
        api.post(
            "/integrations",
            json!({"provider": "fakehub", "unique_key": "fakehub"})
        )
        .await
        .0,
        200
    );
    let (status, body) = api
        .post(
            "/connections",
            json!({"provider_config_key": "fakehub", "connection_id": "acme",
                   "credentials": {"type": "API_KEY", "apiKey": "fk_live_secret"}}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let project = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/fakehub-project");
    let compiled = scripts::compile(&project).unwrap();
    scripts::deploy(
        &ctx.db,
        ctx.scripts.as_ref(),
        env.id,
        DeployRequest {
            integration: None,
            functions: compiled.functions,
        },
    )
    .await
    .unwrap();
    let connection = body["id"].as_i64().unwrap();
    let workers = Workers::start(ctx.clone());
    Setup {
        ctx,
        api,
        env_id: env.id,
        connection,
        upstream,
        workers,
    }
}

async fn run(s: &Setup, kind: TaskKind, function: &str, input: Option<Value>) -> tasks::Task {
    let payload = json!({"integration": "fakehub", "connection_id": "acme", "function": function, "input": input});
    let id: Uuid = tasks::insert(
        &s.ctx.db,
        &[NewTask::new(s.env_id, kind, function, payload)],
    )
    .await
    .unwrap()[0];
    eventually(
        &format!("{function} to finish"),
        Duration::from_secs(120),
        || async {
            let task = tasks::get(&s.ctx.db, id).await.unwrap()?;
            task.state.is_terminal().then_some(task)
        },
    )
    .await
}

fn results(task: &tasks::Task, model: &str) -> (u64, u64, u64) {
    assert_eq!(task.state, TaskState::Succeeded, "{:?}", task.error);
    let r = &task.output.as_ref().unwrap()["results"][model];
    let n = |k: &str| r[k].as_u64().unwrap_or(0);
    (n("added"), n("updated"), n("deleted"))
}

#[tokio::test]
async fn a_paginating_sync_dedupes_updates_and_deletes() {
    let s = setup(120).await;
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
    let checkpoint = lasso_shared::checkpoints::get(&s.ctx.db, s.connection, "tickets")
        .await
        .unwrap();
    assert_eq!(checkpoint, Some(json!({"done": true})));
    s.workers.stop().await;
}

#[tokio::test]
async fn actions_return_output_or_their_action_error() {
    let s = setup(30).await;
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
    let s = setup(2).await;
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
    let s = setup(120).await;
    let project = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/fakehub-project");
    let options = |function: &str, input: Option<Value>| lasso_cli::dryrun::Options {
        dir: project.clone(),
        function: function.into(),
        connection_id: "acme".into(),
        integration: None,
        input,
        host: s.api.base.clone(),
        secret_key: s.api.key.clone(),
        limits: lasso_shared::sandbox::Limits::default(),
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
        lasso_shared::checkpoints::get(&s.ctx.db, s.connection, "tickets")
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
