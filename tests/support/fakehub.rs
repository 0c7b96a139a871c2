//! A fake provider API and an environment running the fakehub fixture project
//! (tests/fixtures/fakehub-project), for tests of scripts, orchestration and logs.

use lasso_services::{ConnectionRowId, EnvironmentId};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use bytes::Bytes;
use lasso_cli::workers::Workers;
use lasso_services::queue::{NewTask, TaskKind, tasks};
use serde_json::{Value, json};
use tokio::sync::Notify;
use uuid::Uuid;

use crate::{TestApp, deploy_fixture, providers_file, serve, task_ended};

#[derive(Default)]
pub struct Upstream {
    pub issues: Mutex<Vec<Value>>,
    pub tickets: Mutex<Vec<Value>>,
    /// Authorization headers the provider saw.
    pub auth: Mutex<Vec<String>>,
    /// A page of issues to hold back once: its request notifies `held`, then waits for
    /// `release`, so a test can act while a run is under way.
    pub hold_page: Mutex<Option<usize>>,
    pub held: Notify,
    pub release: Notify,
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
    let hold = up.hold_page.lock().unwrap().take_if(|held| *held == page);
    if hold.is_some() {
        up.held.notify_one();
        up.release.notified().await;
    }
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

/// A provider that fails and repeats the caller's Authorization header in its error.
async fn echo_auth(headers: HeaderMap) -> (axum::http::StatusCode, Json<Value>) {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    (
        axum::http::StatusCode::INTERNAL_SERVER_ERROR,
        Json(json!({"error": "boom", "you_sent": auth})),
    )
}

#[derive(serde::Deserialize)]
struct BlobQuery {
    bytes: usize,
}

/// `{"blob": "aaa…"}` with `bytes` letters, streamed from one static chunk: the provider itself
/// holds nothing, so what the process holds is what Lasso read.
async fn blob(Query(q): Query<BlobQuery>) -> impl IntoResponse {
    static CHUNK: [u8; 64 * 1024] = [b'a'; 64 * 1024];
    let mut parts = vec![Bytes::from_static(b"{\"blob\":\"")];
    let mut left = q.bytes;
    while left > 0 {
        let n = left.min(CHUNK.len());
        parts.push(Bytes::from_static(&CHUNK[..n]));
        left -= n;
    }
    parts.push(Bytes::from_static(b"\"}"));
    let body = axum::body::Body::from_stream(futures::stream::iter(
        parts.into_iter().map(Ok::<_, std::convert::Infallible>),
    ));
    ([("content-type", "application/json")], body)
}

async fn list_tickets(State(up): State<Arc<Upstream>>, Query(q): Query<PageQuery>) -> Json<Value> {
    let tickets = up.tickets.lock().unwrap().clone();
    let start: usize = q.cursor.as_deref().map(|c| c.parse().unwrap()).unwrap_or(0);
    let end = (start + 250).min(tickets.len());
    let next = (end < tickets.len()).then(|| end.to_string());
    Json(json!({"tickets": tickets[start..end], "next_cursor": next}))
}

pub struct Setup {
    pub app: TestApp,
    pub env_id: EnvironmentId,
    pub connection: ConnectionRowId,
    pub upstream: Arc<Upstream>,
    pub workers: Workers,
}

crate::setup_derefs_to_app!(Setup);

/// A provider catalog with `fakehub` (API key, link pagination) served at `base`.
pub fn catalog(base: &str) -> std::path::PathBuf {
    providers_file(&format!(
        "fakehub:\n  display_name: Fakehub\n  auth_mode: API_KEY\n  docs: https://example.com\n  \
         proxy:\n    base_url: {base}\n    headers:\n      authorization: Bearer ${{apiKey}}\n    \
         paginate:\n      type: link\n      limit_name_in_request: per_page\n      link_rel_in_response_header: next\n"
    ))
}

/// A fake provider (10,000 issues behind link pagination, 1,000 tickets behind a cursor), an
/// environment with the `fakehub` integration and connection `acme` (API key `fk_live_secret`),
/// the fixture project deployed, and the `lasso dev` workers running. `settings` are extra
/// `LASSO_*` settings.
pub async fn setup(settings: &[(&'static str, String)]) -> Setup {
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
            .route("/echo-auth", get(echo_auth))
            .route("/blob", get(blob))
            .with_state(upstream.clone()),
    )
    .await;
    let app = TestApp::builder()
        .setting("LASSO_PROVIDERS_FILE", catalog(&base).display().to_string())
        .settings(settings)
        .environment("scripts")
        .start()
        .await;
    let api = &app.api;
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
    deploy_fixture(&app.ctx, app.env.id, "fakehub-project").await;
    let connection = ConnectionRowId(body["id"].as_i64().unwrap());
    let workers = Workers::start(app.ctx.clone());
    Setup {
        env_id: app.env.id,
        app,
        connection,
        upstream,
        workers,
    }
}

/// Queues a function task for connection `acme` and waits until it ends.
pub async fn run(s: &Setup, kind: TaskKind, function: &str, input: Option<Value>) -> tasks::Task {
    let id = queue(s, kind, function, input).await;
    wait(s, id).await
}

/// A function task for connection `acme`, as [`run`] queues it.
pub fn task(s: &Setup, kind: TaskKind, function: &str, input: Option<Value>) -> NewTask {
    let payload = crate::function_payload("fakehub", "acme", function, input);
    NewTask::new(s.env_id, kind, function, payload)
}

/// Queues a function task for connection `acme`; returns its id.
pub async fn queue(s: &Setup, kind: TaskKind, function: &str, input: Option<Value>) -> Uuid {
    tasks::insert(&s.ctx.db, &[task(s, kind, function, input)])
        .await
        .unwrap()[0]
}

/// Waits until task `id` ends.
pub async fn wait(s: &Setup, id: Uuid) -> tasks::Task {
    task_ended(
        &s.ctx.db,
        id,
        &format!("task {id} to finish"),
        Duration::from_secs(120),
    )
    .await
}
