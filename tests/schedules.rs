//! Sync schedules end to end: a deployed sync runs on its own (scheduler → dispatcher → SQS on
//! moto → the runner's SQS handler) and sends a signed webhook; a run whose runner dies expires
//! and is retried without losing or duplicating records; a duplicate message runs a task once;
//! pause cancels a running sync and start resumes it; a triggered full refresh detects
//! deletions; the sync API's fields, input checks and environment isolation.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use lasso_cli::event_source::{self, Mapping};
use lasso_cli::workers::Workers;
use lasso_services::adapters::transport::OutgoingMessage;
use lasso_services::queue::{TaskState, tasks};
use lasso_services::records::{self, Scope};
use lasso_services::scripts::{self, CompiledFunction, DeployRequest};
use lasso_services::{ConnectionRowId, Context, environments, runner_groups};
use lasso_tests::receiver::Receiver;
use lasso_tests::*;
use serde_json::{Value, json};
use uuid::Uuid;

/// The fake provider: contacts with a version per change (listed since a version), and a slow
/// list of 1000 items in pages of 10.
#[derive(Default)]
struct Upstream {
    contacts: Mutex<Vec<Value>>,
    version: AtomicU64,
    /// The query of every `/contacts` request.
    contact_queries: Mutex<Vec<HashMap<String, String>>>,
    slow_delay_ms: AtomicU64,
    slow_pages: AtomicUsize,
    /// `/contacts` answers 500 (the upstream is down).
    contacts_down: AtomicBool,
}

impl Upstream {
    fn put_contact(&self, id: &str, name: &str) {
        let version = self.version.fetch_add(1, Ordering::SeqCst) + 1;
        let mut contacts = self.contacts.lock().unwrap();
        contacts.retain(|c| c["id"] != id);
        contacts.push(json!({"id": id, "name": name, "version": version}));
    }

    fn remove_contact(&self, id: &str) {
        self.contacts.lock().unwrap().retain(|c| c["id"] != id);
    }

    fn contact_requests(&self) -> usize {
        self.contact_queries.lock().unwrap().len()
    }
}

fn next_link(headers: &HeaderMap, path: &str, query: &str) -> HeaderMap {
    let host = headers.get("host").unwrap().to_str().unwrap();
    let mut out = HeaderMap::new();
    out.insert(
        "link",
        format!("<http://{host}{path}?{query}>; rel=\"next\"")
            .parse()
            .unwrap(),
    );
    out
}

async fn list_contacts(
    State(up): State<Arc<Upstream>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> impl IntoResponse {
    up.contact_queries.lock().unwrap().push(q.clone());
    if up.contacts_down.load(Ordering::SeqCst) {
        return (
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            HeaderMap::new(),
            Json(json!({"message": "upstream down"})),
        );
    }
    let since: u64 = q.get("since").map_or(0, |s| s.parse().unwrap());
    let per_page: usize = q.get("per_page").map_or(50, |s| s.parse().unwrap());
    let page: usize = q.get("page").map_or(1, |s| s.parse().unwrap());
    let mut changed: Vec<Value> = up
        .contacts
        .lock()
        .unwrap()
        .iter()
        .filter(|c| c["version"].as_u64().unwrap() > since)
        .cloned()
        .collect();
    changed.sort_by_key(|c| c["version"].as_u64().unwrap());
    let chunk: Vec<Value> = changed
        .iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .cloned()
        .collect();
    let links = if page * per_page < changed.len() {
        next_link(
            &headers,
            "/contacts",
            &format!("since={since}&per_page={per_page}&page={}", page + 1),
        )
    } else {
        HeaderMap::new()
    };
    (axum::http::StatusCode::OK, links, Json(Value::Array(chunk)))
}

async fn list_slow(
    State(up): State<Arc<Upstream>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> impl IntoResponse {
    tokio::time::sleep(Duration::from_millis(
        up.slow_delay_ms.load(Ordering::SeqCst),
    ))
    .await;
    up.slow_pages.fetch_add(1, Ordering::SeqCst);
    let page: usize = q.get("page").map_or(1, |s| s.parse().unwrap());
    let items: Vec<Value> = (1..=10)
        .map(|i| json!({"id": format!("s{}", (page - 1) * 10 + i)}))
        .collect();
    let links = if page < 100 {
        next_link(&headers, "/slow", &format!("per_page=10&page={}", page + 1))
    } else {
        HeaderMap::new()
    };
    (links, Json(Value::Array(items)))
}

struct Setup {
    ctx: Context,
    /// What the runner handler runs with: on AWS, the environment's runner group's database
    /// user under row-level security, as a deployed runner is.
    runner: Context,
    api: Api,
    upstream: Arc<Upstream>,
    hooks: Receiver,
    hook_secret: String,
}

#[derive(Clone, Copy, PartialEq)]
enum Adapters {
    /// S3 and SQS on moto.
    Aws,
    /// `lasso dev`'s: a directory and the in-process transport.
    Local,
}

async fn setup(adapters: Adapters) -> Setup {
    let upstream = Arc::new(Upstream::default());
    let base = serve(
        Router::new()
            .route("/contacts", get(list_contacts))
            .route("/slow", get(list_slow))
            .with_state(upstream.clone()),
    )
    .await;
    let providers = lasso_tests::fakehub::catalog(&base);
    let db = fresh_database().await;
    let mut settings = vec![
        ("LASSO_PROVIDERS_FILE", providers.display().to_string()),
        ("LASSO_HEARTBEAT_SECS", "1".to_string()),
        ("LASSO_SCRIPT_TIMEOUT_SECS", "120".to_string()),
    ];
    // On AWS the environment gets a runner group of its own: its tasks go to that group's
    // queue, and its runner serves that group only.
    let group = unique("sched").replace('-', "_");
    let ctx = match adapters {
        Adapters::Aws => {
            settings.push(("LASSO_RUNNER_GROUP", group.clone()));
            settings.push((
                "LASSO_SCRIPT_STORE",
                format!("s3://{}/scripts", create_bucket().await),
            ));
            settings.push(("LASSO_TASK_TRANSPORT", "sqs".into()));
            settings.push(("LASSO_RUNNER_QUEUE_URL", create_queue(30).await));
            Context::build(config(&db, &settings), Some(aws_sdk_config())).unwrap()
        }
        Adapters::Local => Context::build(config(&db, &settings), None).unwrap(),
    };
    let (env, key) = environments::create(&ctx.db, "schedules").await.unwrap();
    let runner = match adapters {
        Adapters::Aws => {
            runner_groups::assign(&ctx.db, env.id, &group)
                .await
                .unwrap();
            let runner_db = runner_database(&db, &group).await;
            Context::build(config(&runner_db, &settings), Some(aws_sdk_config())).unwrap()
        }
        // The in-process transport is the context's own.
        Adapters::Local => ctx.clone(),
    };
    let api = Api::new(&serve_api(ctx.clone()).await, &key);
    let hooks = Receiver::start().await;
    let (status, settings) = api
        .patch("/environment", json!({"webhook_url": hooks.url}))
        .await;
    assert_eq!(status, 200, "{settings}");
    let (status, body) = api
        .post(
            "/integrations",
            json!({"provider": "fakehub", "unique_key": "fakehub"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    Setup {
        ctx,
        runner,
        api,
        upstream,
        hooks,
        hook_secret: settings["webhook_signing_secret"]
            .as_str()
            .unwrap()
            .to_string(),
    }
}

fn project_functions(names: &[&str]) -> Vec<CompiledFunction> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/schedules-project");
    lasso_compile::compile(&dir)
        .unwrap()
        .functions
        .into_iter()
        .filter(|f| names.contains(&f.name.as_str()))
        .collect()
}

impl Setup {
    /// Deploys these syncs of the schedules project through the api, as `lasso deploy` does.
    async fn deploy(&self, functions: Vec<CompiledFunction>) -> Value {
        let request = DeployRequest {
            integration: None,
            functions,
        };
        let (status, body) = self
            .api
            .post("/scripts/deploy", serde_json::to_value(request).unwrap())
            .await;
        assert_eq!(status, 200, "{body}");
        body
    }

    async fn connect(&self, connection_id: &str) -> ConnectionRowId {
        let (status, body) = self
            .api
            .post(
                "/connections",
                json!({"provider_config_key": "fakehub", "connection_id": connection_id,
                       "credentials": {"type": "API_KEY", "apiKey": "fk_secret"}}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        ConnectionRowId(body["id"].as_i64().unwrap())
    }

    async fn schedule_id(&self, connection: ConnectionRowId, sync: &str) -> Uuid {
        sqlx::query_scalar(
            "SELECT id FROM queue.schedules WHERE connection_id = $1 AND function_name = $2",
        )
        .bind(connection)
        .bind(sync)
        .fetch_one(&self.ctx.db)
        .await
        .unwrap()
    }

    /// The schedule's tasks, oldest first.
    async fn tasks_of(&self, schedule: Uuid) -> Vec<tasks::Task> {
        let ids: Vec<Uuid> = sqlx::query_scalar(
            "SELECT id FROM queue.tasks WHERE schedule_id = $1 ORDER BY created_at, id",
        )
        .bind(schedule)
        .fetch_all(&self.ctx.db)
        .await
        .unwrap();
        let mut out = Vec::new();
        for id in ids {
            out.push(tasks::get(&self.ctx.db, id).await.unwrap().unwrap());
        }
        out
    }

    async fn wait_task(&self, schedule: Uuid, nth: usize, state: TaskState) -> tasks::Task {
        eventually(
            &format!("task {nth} of the schedule to be {state:?}"),
            Duration::from_secs(60),
            || async {
                let all = self.tasks_of(schedule).await;
                all.get(nth).filter(|t| t.state == state).cloned()
            },
        )
        .await
    }

    async fn status(&self, query: &str) -> Value {
        let (status, body) = self.api.get(&format!("/sync/status?{query}")).await;
        assert_eq!(status, 200, "{body}");
        body
    }

    async fn set_schedule_due(&self, schedule: Uuid) {
        sqlx::query("UPDATE queue.schedules SET next_execution_at = now() - interval '1 second' WHERE id = $1")
            .bind(schedule)
            .execute(&self.ctx.db)
            .await
            .unwrap();
    }
}

fn results(task: &tasks::Task, model: &str) -> (u64, u64, u64) {
    assert_eq!(task.state, TaskState::Succeeded, "{:?}", task.error);
    let r = &task.output.as_ref().unwrap()["results"][model];
    let n = |k: &str| r[k].as_u64().unwrap_or(0);
    (n("added"), n("updated"), n("deleted"))
}

/// Lambda's event source mapping for the runner, pumping until `stop`.
fn pump_runner(ctx: Context, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mapping = Mapping::default();
        while !stop.load(Ordering::SeqCst) {
            event_source::pump_once(ctx.transport().as_ref(), &mapping, |event| async {
                let response = lasso_runner::handle(&ctx, event).await;
                assert!(response.batch_item_failures.is_empty());
                Ok(response)
            })
            .await
            .unwrap();
        }
    })
}

fn ms(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_deployed_sync_runs_on_its_own_through_the_four_functions() {
    let s = setup(Adapters::Aws).await;
    for n in 1..=120 {
        s.upstream
            .put_contact(&format!("c{n}"), &format!("Contact {n}"));
    }
    // The connection exists first: deploying the sync gives it a schedule, due at once.
    let connection = s.connect("acme").await;
    s.deploy(project_functions(&["contacts"])).await;
    let schedule = s.schedule_id(connection, "contacts").await;

    let stop = Arc::new(AtomicBool::new(false));
    let runner = pump_runner(s.runner.clone(), stop.clone());
    // One scheduler invocation with 45 s before its deadline ticks at 0, 10, 20 and 30 s.
    let ctx = s.ctx.clone();
    let invocation = tokio::spawn(async move {
        lasso_scheduler::handle_invocation(&ctx, SystemTime::now() + Duration::from_secs(45))
            .await
            .unwrap()
    });

    let first = s.wait_task(schedule, 0, TaskState::Succeeded).await;
    assert_eq!(results(&first, "Contact"), (120, 0, 0));
    let scope = Scope::new(connection, "Contact", None);
    assert_eq!(records::count(&s.ctx.db, &scope).await.unwrap(), 120);
    assert_eq!(first.payload.function().unwrap().last_sync_date, None);

    let status = s
        .status("provider_config_key=fakehub&syncs=contacts&connection_id=acme")
        .await;
    let st = &status["syncs"][0];
    assert_eq!(st["id"], schedule.to_string());
    assert_eq!(st["name"], "contacts");
    assert_eq!(st["variant"], "base");
    assert_eq!(st["connection_id"], "acme");
    assert_eq!(st["status"], "SUCCESS");
    assert_eq!(st["type"], "INITIAL");
    assert_eq!(st["frequency"], "every 30s");
    assert_eq!(st["latestExecutionStatus"], "SUCCESS");
    assert_eq!(
        st["latestResult"],
        json!({"Contact": {"added": 120, "updated": 0, "deleted": 0}})
    );
    assert_eq!(st["recordCount"], json!({"Contact": 120}));
    assert_eq!(st["checkpoint"], json!({"version": 120}));
    let finished: chrono::DateTime<chrono::Utc> =
        st["finishedAt"].as_str().unwrap().parse().unwrap();
    assert_eq!(finished, first.completed_at.unwrap());
    let next: chrono::DateTime<chrono::Utc> =
        st["nextScheduledSyncAt"].as_str().unwrap().parse().unwrap();
    let created: chrono::DateTime<chrono::Utc> =
        sqlx::query_scalar("SELECT created_at FROM queue.schedules WHERE id = $1")
            .bind(schedule)
            .fetch_one(&s.ctx.db)
            .await
            .unwrap();
    assert_eq!(next, created + chrono::Duration::seconds(30));

    // A signed webhook for the model that changed, in Nango's shape.
    let hook = s.hooks.wait_for(1, Duration::from_secs(10)).await.remove(0);
    assert!(hook.signed_with(&s.hook_secret));
    let body = hook.json();
    assert_eq!(
        body,
        json!({"from": "nango", "type": "sync", "connectionId": "acme",
               "providerConfigKey": "fakehub", "syncName": "contacts", "syncVariant": "base",
               "model": "Contact", "syncType": "INITIAL", "success": true,
               "modifiedAfter": ms(first.started_at.unwrap()),
               "responseResults": {"added": 120, "updated": 0, "deleted": 0},
               "queryTimeStamp": null})
    );

    // Upstream changes; 30 s after the first run the schedule runs again by itself, from its
    // checkpoint and with the last run's start as lastSyncDate.
    s.upstream.put_contact("c7", "Renamed");
    for n in 121..=125 {
        s.upstream
            .put_contact(&format!("c{n}"), &format!("Contact {n}"));
    }
    let second = s.wait_task(schedule, 1, TaskState::Succeeded).await;
    assert_eq!(results(&second, "Contact"), (5, 1, 0));
    let started = second.payload.function().unwrap().last_sync_date;
    assert_eq!(started, first.started_at);
    let queries = s.upstream.contact_queries.lock().unwrap().clone();
    let last = queries.last().unwrap();
    assert_eq!(last["since"], "120");
    assert_eq!(last["updated_after"], ms(first.started_at.unwrap()));
    assert!(
        second.created_at >= created + chrono::Duration::seconds(30),
        "the second run waited for its time"
    );

    let reports = invocation.await.unwrap();
    assert_eq!(reports.len(), 4, "ticks at 0, 10, 20 and 30 s");
    assert_eq!(
        reports.iter().map(|r| r.scheduled.created).sum::<usize>(),
        2
    );
    let second_hook = s.hooks.wait_for(2, Duration::from_secs(10)).await.remove(1);
    assert!(second_hook.signed_with(&s.hook_secret));
    let body = second_hook.json();
    assert_eq!(body["syncType"], "INCREMENTAL");
    assert_eq!(
        body["responseResults"],
        json!({"added": 5, "updated": 1, "deleted": 0})
    );
    assert_eq!(body["modifiedAfter"], ms(second.started_at.unwrap()));
    assert_eq!(body["queryTimeStamp"], body["modifiedAfter"]);
    stop.store(true, Ordering::SeqCst);
    runner.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_message_delivered_twice_runs_the_task_once() {
    let s = setup(Adapters::Aws).await;
    for n in 1..=60 {
        s.upstream
            .put_contact(&format!("c{n}"), &format!("Contact {n}"));
    }
    s.deploy(project_functions(&["contacts"])).await;
    // The sync is deployed first: creating the connection gives it its schedule.
    let connection = s.connect("acme").await;
    let schedule = s.schedule_id(connection, "contacts").await;
    // Triggered, the task is dispatched at once; SQS then delivers its message a second time.
    let (status, body) = s
        .api
        .post(
            "/sync/trigger",
            json!({"provider_config_key": "fakehub", "connection_id": "acme", "syncs": ["contacts"]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"success": true}));
    let task = s.tasks_of(schedule).await.remove(0);
    assert_eq!(task.state, TaskState::Dispatched);
    let failed = s
        .ctx
        .transport()
        .send_batch(&[OutgoingMessage {
            id: "duplicate".into(),
            body: json!({"task_id": task.id}).to_string(),
        }])
        .await
        .unwrap();
    assert!(failed.is_empty());

    let mapping = Mapping::default();
    let mut received = 0;
    while received < 2 {
        received += event_source::pump_once(s.ctx.transport().as_ref(), &mapping, |event| async {
            let response = lasso_runner::handle(&s.runner, event).await;
            assert!(response.batch_item_failures.is_empty());
            Ok(response)
        })
        .await
        .unwrap();
    }
    let done = tasks::get(&s.ctx.db, task.id).await.unwrap().unwrap();
    assert_eq!(results(&done, "Contact"), (60, 0, 0));
    assert_eq!(s.tasks_of(schedule).await.len(), 1);
    assert_eq!(s.upstream.contact_requests(), 2, "one run: two pages of 50");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(s.hooks.received().len(), 1, "one run, one webhook");
    let left = s
        .ctx
        .transport()
        .receive(10, Duration::from_secs(1), Duration::from_secs(30))
        .await
        .unwrap();
    assert!(left.is_empty(), "both deliveries were deleted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_runner_killed_mid_sync_expires_and_is_retried_without_lost_or_duplicate_records() {
    let s = setup(Adapters::Aws).await;
    s.upstream.slow_delay_ms.store(200, Ordering::SeqCst);
    let connection = s.connect("acme").await;
    s.deploy(project_functions(&["slow"])).await;
    let schedule = s.schedule_id(connection, "slow").await;

    // The tick creates the scheduled run and dispatches it over SQS.
    let report = lasso_scheduler::handle(&s.ctx).await.unwrap();
    assert_eq!(report.scheduled.created, 1);
    assert_eq!(report.dispatched.sent, 1);
    let first = s.tasks_of(schedule).await.remove(0);
    assert_eq!(first.max_attempts, 3);

    // A runner takes it, saves a few pages, and dies (its future is dropped mid-run: no more
    // heartbeats, no completion).
    let ctx = s.runner.clone();
    let doomed = tokio::spawn(async move {
        event_source::pump_once(
            ctx.transport().as_ref(),
            &Mapping::default(),
            |event| async { Ok(lasso_runner::handle(&ctx, event).await) },
        )
        .await
    });
    let scope = Scope::new(connection, "SlowItem", None);
    let saved_before = eventually("some pages saved", Duration::from_secs(30), || async {
        let n = records::count(&s.ctx.db, &scope).await.unwrap();
        (n >= 30).then_some(n)
    })
    .await;
    doomed.abort();
    let _ = doomed.await;
    let pages = s.upstream.slow_pages.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        s.upstream.slow_pages.load(Ordering::SeqCst),
        pages,
        "the dead runner calls nobody"
    );

    // Its heartbeat goes stale (the test shortens the timeout); the next tick expires the task
    // and retries it.
    sqlx::query("UPDATE queue.tasks SET heartbeat_timeout_secs = 2 WHERE id = $1")
        .bind(first.id)
        .execute(&s.ctx.db)
        .await
        .unwrap();
    let hb = || async {
        sqlx::query_scalar::<_, chrono::DateTime<chrono::Utc>>(
            "SELECT last_heartbeat_at FROM queue.tasks WHERE id = $1",
        )
        .bind(first.id)
        .fetch_one(&s.ctx.db)
        .await
        .unwrap()
    };
    let last_heartbeat = hb().await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(hb().await, last_heartbeat, "no heartbeat after the kill");
    let saved_at_kill = records::count(&s.ctx.db, &scope).await.unwrap();
    assert!(saved_at_kill >= saved_before && saved_at_kill < 1000);
    s.upstream.slow_delay_ms.store(0, Ordering::SeqCst);
    let report = lasso_scheduler::handle(&s.ctx).await.unwrap();
    assert_eq!((report.expired, report.retried), (1, 1));
    assert_eq!(report.dispatched.sent, 1);
    let expired = tasks::get(&s.ctx.db, first.id).await.unwrap().unwrap();
    assert_eq!(expired.state, TaskState::Expired);
    assert_eq!(
        expired.error.unwrap()["message"],
        "the runner stopped sending heartbeats"
    );

    let stop = Arc::new(AtomicBool::new(false));
    let runner = pump_runner(s.runner.clone(), stop.clone());
    let retry = s.wait_task(schedule, 1, TaskState::Succeeded).await;
    stop.store(true, Ordering::SeqCst);
    runner.await.unwrap();
    assert_eq!(retry.attempt, 2);
    assert_eq!(retry.payload, first.payload);
    let retry_of: Option<Uuid> =
        sqlx::query_scalar("SELECT retry_of FROM queue.tasks WHERE id = $1")
            .bind(retry.id)
            .fetch_one(&s.ctx.db)
            .await
            .unwrap();
    assert_eq!(retry_of, Some(first.id));
    // Every record once: the retry added exactly what the dead run had not saved, and its full
    // run deleted nothing.
    let (added, updated, deleted) = results(&retry, "SlowItem");
    assert_eq!(added, 1000 - saved_at_kill as u64);
    assert_eq!((updated, deleted), (0, 0));
    assert_eq!(records::count(&s.ctx.db, &scope).await.unwrap(), 1000);
    let distinct: i64 = sqlx::query_scalar(
        "SELECT count(DISTINCT external_id) FROM records.records
         WHERE connection_id = $1 AND model = 'SlowItem' AND external_id ~ '^s([1-9][0-9]{0,2}|1000)$'",
    )
    .bind(connection)
    .fetch_one(&s.ctx.db)
    .await
    .unwrap();
    assert_eq!(distinct, 1000);
}

/// Moves a task's clock back: `column` (a timestamp) by `secs` seconds.
async fn age(db: &sqlx::PgPool, task: Uuid, column: &str, secs: i64) {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE queue.tasks SET {column} = {column} - make_interval(secs => $2) WHERE id = $1"
    )))
    .bind(task)
    .bind(secs as f64)
    .execute(db)
    .await
    .unwrap();
}

#[tokio::test]
async fn the_scheduler_skips_missed_ticks_and_expires_each_timeout_while_the_budget_lasts() {
    let s = setup(Adapters::Local).await;
    let db = &s.ctx.db;
    let connection = s.connect("acme").await;
    s.deploy(project_functions(&["contacts"])).await;
    let schedule = s.schedule_id(connection, "contacts").await;
    let next_run = || async {
        sqlx::query_scalar::<_, chrono::DateTime<chrono::Utc>>(
            "SELECT next_execution_at FROM queue.schedules WHERE id = $1",
        )
        .bind(schedule)
        .fetch_one(db)
        .await
        .unwrap()
    };
    let tick = || async { lasso_services::scheduler::tick(&s.ctx).await.unwrap() };

    let report = tick().await;
    assert_eq!((report.scheduled.due, report.scheduled.created), (1, 1));
    let first = s.tasks_of(schedule).await.remove(0);
    assert_eq!(first.state, TaskState::Dispatched);

    // The run overruns by three ticks of 30 s: the schedule comes due but gets no second task,
    // and its next run is the next tick after now, not one of the missed ones.
    sqlx::query(
        "UPDATE queue.schedules SET next_execution_at = now() - interval '95 seconds' WHERE id = $1",
    )
    .bind(schedule)
    .execute(db)
    .await
    .unwrap();
    let report = tick().await;
    assert_eq!((report.scheduled.due, report.scheduled.created), (1, 0));
    assert_eq!(s.tasks_of(schedule).await.len(), 1);
    let now = chrono::Utc::now();
    let next = next_run().await;
    assert!(
        next > now && next <= now + chrono::Duration::seconds(30),
        "{next} is the next tick after {now}"
    );

    // Never started within its created-to-started timeout: expired, and tried again.
    let created_to_started: i32 =
        sqlx::query_scalar("SELECT created_to_started_secs FROM queue.tasks WHERE id = $1")
            .bind(first.id)
            .fetch_one(db)
            .await
            .unwrap();
    age(
        db,
        first.id,
        "created_at",
        i64::from(created_to_started) + 1,
    )
    .await;
    let report = tick().await;
    assert_eq!((report.expired, report.retried), (1, 1));
    let expired = tasks::get(db, first.id).await.unwrap().unwrap();
    assert_eq!(expired.state, TaskState::Expired);
    assert_eq!(
        expired.error.unwrap()["message"],
        "the task was not started before its created-to-started timeout"
    );

    // The retry starts and keeps beating but runs past its started-to-completed timeout.
    let second = s.tasks_of(schedule).await.remove(1);
    assert_eq!((second.attempt, second.state), (2, TaskState::Dispatched));
    tasks::start(db, second.id, &s.ctx.config.runner_group)
        .await
        .unwrap()
        .unwrap();
    let started_to_completed: i32 =
        sqlx::query_scalar("SELECT started_to_completed_secs FROM queue.tasks WHERE id = $1")
            .bind(second.id)
            .fetch_one(db)
            .await
            .unwrap();
    age(
        db,
        second.id,
        "started_at",
        i64::from(started_to_completed) + 1,
    )
    .await;
    assert!(tasks::heartbeat(db, second.id).await.unwrap());
    let report = tick().await;
    assert_eq!((report.expired, report.retried), (1, 1));
    let expired = tasks::get(db, second.id).await.unwrap().unwrap();
    assert_eq!(
        expired.error.unwrap()["message"],
        "the task ran past its started-to-completed timeout"
    );
    assert!(
        !tasks::heartbeat(db, second.id).await.unwrap(),
        "its runner is told to stop"
    );

    // The last attempt's runner goes silent: expired, and the budget of three is spent.
    let third = s.tasks_of(schedule).await.remove(2);
    assert_eq!(third.attempt, 3);
    tasks::start(db, third.id, &s.ctx.config.runner_group)
        .await
        .unwrap()
        .unwrap();
    age(db, third.id, "last_heartbeat_at", 3600).await;
    let report = tick().await;
    assert_eq!((report.expired, report.retried), (1, 0));
    let expired = tasks::get(db, third.id).await.unwrap().unwrap();
    assert_eq!(
        expired.error.unwrap()["message"],
        "the runner stopped sending heartbeats"
    );
    assert_eq!(s.tasks_of(schedule).await.len(), 3);
    // Only the spent budget is announced, once.
    let hooks = s.hooks.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(hooks.len(), 1, "{hooks:?}");
    let body = hooks[0].json();
    assert_eq!(
        (&body["success"], &body["model"]),
        (&json!(false), &json!("Contact"))
    );
    assert_eq!(body["error"]["type"], "expired");
    assert_eq!(
        body["error"]["description"],
        "the runner stopped sending heartbeats"
    );
    let status = s
        .status("provider_config_key=fakehub&syncs=contacts&connection_id=acme")
        .await;
    assert_eq!(status["syncs"][0]["status"], "ERROR");
    assert_eq!(status["syncs"][0]["latestExecutionStatus"], "ERROR");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pause_cancels_the_running_sync_and_stops_future_runs_and_start_resumes() {
    let s = setup(Adapters::Local).await;
    s.upstream.slow_delay_ms.store(150, Ordering::SeqCst);
    let connection = s.connect("acme").await;
    s.deploy(project_functions(&["slow"])).await;
    let schedule = s.schedule_id(connection, "slow").await;
    let workers = Workers::start(s.ctx.clone());
    let scope = Scope::new(connection, "SlowItem", None);
    let running = s.wait_task(schedule, 0, TaskState::Started).await;
    eventually(
        "the run to save records",
        Duration::from_secs(30),
        || async { (records::count(&s.ctx.db, &scope).await.unwrap() > 0).then_some(()) },
    )
    .await;

    // One run at a time: a trigger while it runs changes nothing and says why.
    let (status, body) = s
        .api
        .post(
            "/sync/trigger",
            json!({"provider_config_key": "fakehub", "syncs": ["slow"], "sync_mode": "full_refresh"}),
        )
        .await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("`slow` of connection `acme` is running"),
        "{body}"
    );
    assert_eq!(s.tasks_of(schedule).await.len(), 1);

    let (status, body) = s
        .api
        .post(
            "/sync/pause",
            json!({"provider_config_key": "fakehub", "connection_id": "acme", "syncs": ["slow"]}),
        )
        .await;
    assert_eq!((status, &body), (200, &json!({"success": true})));
    let cancelled = tasks::get(&s.ctx.db, running.id).await.unwrap().unwrap();
    assert_eq!(cancelled.state, TaskState::Cancelled);
    // The runner learns it at its next heartbeat (every second here) and stops the script.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let pages = s.upstream.slow_pages.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        s.upstream.slow_pages.load(Ordering::SeqCst),
        pages,
        "the cancelled script makes no more calls"
    );
    assert!(pages < 100, "it stopped before the end ({pages} pages)");
    assert_eq!(
        tasks::get(&s.ctx.db, running.id)
            .await
            .unwrap()
            .unwrap()
            .state,
        TaskState::Cancelled,
        "the runner did not overwrite the cancellation"
    );
    let st = &s
        .status("provider_config_key=fakehub&syncs=slow&connection_id=acme")
        .await["syncs"][0];
    assert_eq!(st["status"], "PAUSED");
    assert_eq!(st["nextScheduledSyncAt"], Value::Null);
    assert_eq!(st["latestExecutionStatus"], "STOPPED");

    // Paused: even when due, the ticks create nothing.
    s.set_schedule_due(schedule).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(s.tasks_of(schedule).await.len(), 1);

    s.upstream.slow_delay_ms.store(0, Ordering::SeqCst);
    let (status, body) = s
        .api
        .post(
            "/sync/start",
            json!({"provider_config_key": "fakehub", "syncs": [{"name": "slow", "variant": "base"}]}),
        )
        .await;
    assert_eq!((status, &body), (200, &json!({"success": true})));
    let resumed = s.wait_task(schedule, 1, TaskState::Succeeded).await;
    assert_eq!(results(&resumed, "SlowItem").2, 0);
    assert_eq!(records::count(&s.ctx.db, &scope).await.unwrap(), 1000);
    let st = &s.status("provider_config_key=fakehub&syncs=*").await["syncs"][0];
    assert_eq!(st["status"], "SUCCESS");
    assert_eq!(st["recordCount"], json!({"SlowItem": 1000}));
    assert!(st["nextScheduledSyncAt"].is_string());
    workers.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_triggered_full_refresh_clears_the_checkpoint_and_detects_deletions() {
    let s = setup(Adapters::Local).await;
    for n in 1..=100 {
        s.upstream
            .put_contact(&format!("c{n}"), &format!("Contact {n}"));
    }
    s.deploy(project_functions(&["contacts"])).await;
    let connection = s.connect("acme").await;
    let schedule = s.schedule_id(connection, "contacts").await;
    let workers = Workers::start(s.ctx.clone());
    let initial = s.wait_task(schedule, 0, TaskState::Succeeded).await;
    assert_eq!(results(&initial, "Contact"), (100, 0, 0));

    // A day between scheduled runs, so only triggered runs happen from here.
    let (status, body) = s
        .api
        .call(
            reqwest::Method::PUT,
            "/sync/update-connection-frequency",
            Some(
                json!({"provider_config_key": "fakehub", "connection_id": "acme",
                        "sync_name": "contacts", "frequency": "every 1 day"}),
            ),
        )
        .await;
    assert_eq!((status, &body), (200, &json!({"frequency": "every 1 day"})));
    let st = &s.status("provider_config_key=fakehub&syncs=contacts").await["syncs"][0];
    assert_eq!(st["frequency"], "every 1 day");

    for n in [3, 4, 5] {
        s.upstream.remove_contact(&format!("c{n}"));
    }
    s.upstream.put_contact("c10", "Ten");
    s.upstream.put_contact("c11", "Eleven");
    let trigger = |mode: &str| {
        let body = json!({"provider_config_key": "fakehub", "connection_id": "acme",
                          "syncs": ["contacts"], "sync_mode": mode});
        let api = s.api.clone();
        async move { api.post("/sync/trigger", body).await }
    };
    let scope = Scope::new(connection, "Contact", None);

    // Incremental: the changes since the checkpoint; deletions stay unseen.
    assert_eq!(trigger("incremental").await.0, 200);
    let incremental = s.wait_task(schedule, 1, TaskState::Succeeded).await;
    assert_eq!(results(&incremental, "Contact"), (0, 2, 0));
    assert_eq!(records::count(&s.ctx.db, &scope).await.unwrap(), 100);
    assert_eq!(
        s.upstream.contact_queries.lock().unwrap().last().unwrap()["since"],
        "100"
    );

    // Full refresh: checkpoint cleared, everything listed, the deletions detected.
    assert_eq!(trigger("full_refresh").await.0, 200);
    let full = s.wait_task(schedule, 2, TaskState::Succeeded).await;
    let full_payload = full.payload.function().unwrap();
    assert!(full_payload.full);
    assert_eq!(full_payload.last_sync_date, None);
    assert_eq!(results(&full, "Contact"), (0, 0, 3));
    assert_eq!(records::count(&s.ctx.db, &scope).await.unwrap(), 97);
    let queries = s.upstream.contact_queries.lock().unwrap().clone();
    assert_eq!(queries[queries.len() - 2]["since"], "0");
    assert!(!queries[queries.len() - 2].contains_key("updated_after"));
    let st = &s
        .status("provider_config_key=fakehub&syncs=contacts&connection_id=acme")
        .await["syncs"][0];
    assert_eq!(st["type"], "FULL");
    assert_eq!(
        st["latestResult"],
        json!({"Contact": {"added": 0, "updated": 0, "deleted": 3}})
    );
    assert_eq!(st["recordCount"], json!({"Contact": 97}));

    // Clearing the cache too: the records are removed first, so everything is added again.
    let (status, _) = s
        .api
        .post(
            "/sync/trigger",
            json!({"provider_config_key": "fakehub", "connection_id": "acme",
                   "syncs": ["contacts"], "opts": {"reset": true, "emptyCache": true}}),
        )
        .await;
    assert_eq!(status, 200);
    let cleared = s.wait_task(schedule, 3, TaskState::Succeeded).await;
    assert_eq!(results(&cleared, "Contact"), (97, 0, 0));
    let deleted_rows: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM records.records WHERE connection_id = $1 AND deleted_at IS NOT NULL",
    )
    .bind(connection)
    .fetch_one(&s.ctx.db)
    .await
    .unwrap();
    assert_eq!(
        deleted_rows, 0,
        "the cache was emptied, tombstones included"
    );

    // Back to the sync's own frequency.
    let (status, body) = s
        .api
        .call(
            reqwest::Method::PUT,
            "/sync/update-connection-frequency",
            Some(
                json!({"provider_config_key": "fakehub", "connection_id": "acme",
                        "sync_name": "contacts", "frequency": null}),
            ),
        )
        .await;
    assert_eq!((status, &body), (200, &json!({"frequency": "every 30s"})));
    workers.stop().await;
}

#[tokio::test]
async fn schedules_follow_deploys_and_connections() {
    let s = setup(Adapters::Local).await;
    let acme = s.connect("acme").await;
    let first = s.deploy(project_functions(&["contacts", "slow"])).await;
    assert_eq!(first["created"].as_array().unwrap().len(), 2);
    let beta = s.connect("beta").await;
    let rows = || async {
        sqlx::query_as::<_, (ConnectionRowId, String, String, i64, Option<i64>)>(
            "SELECT connection_id, function_name, state::text, frequency_secs, frequency_override_secs
             FROM queue.schedules ORDER BY connection_id, function_name",
        )
        .fetch_all(&s.ctx.db)
        .await
        .unwrap()
    };
    assert_eq!(
        rows().await,
        vec![
            (acme, "contacts".into(), "STARTED".into(), 30, None),
            (acme, "slow".into(), "STARTED".into(), 30, None),
            (beta, "contacts".into(), "STARTED".into(), 30, None),
            (beta, "slow".into(), "STARTED".into(), 30, None),
        ]
    );
    // The reconcile is idempotent.
    let again = lasso_services::queue::schedules::reconcile(&s.ctx.db, Default::default())
        .await
        .unwrap();
    assert_eq!(again, Default::default());

    // acme overrides the contacts frequency; a redeploy with a new frequency moves the others.
    let (status, body) = s
        .api
        .call(
            reqwest::Method::PUT,
            "/sync/update-connection-frequency",
            Some(
                json!({"provider_config_key": "fakehub", "connection_id": "acme",
                        "sync_name": "contacts", "sync_variant": "base",
                        "frequency": "every 5 minutes"}),
            ),
        )
        .await;
    assert_eq!(
        (status, &body),
        (200, &json!({"frequency": "every 5 minutes"}))
    );
    let mut functions = project_functions(&["contacts"]);
    if let scripts::Trigger::Sync(sync) = &mut functions[0].config.trigger {
        sync.runs = "every hour".into();
        sync.frequency_secs = 3600;
        sync.auto_start = false;
    }
    let second = s.deploy(functions).await;
    assert_eq!(second["updated"][0]["name"], "contacts");
    assert_eq!(second["deleted"][0]["name"], "slow");
    assert_eq!(
        rows().await,
        vec![
            (acme, "contacts".into(), "STARTED".into(), 3600, Some(300)),
            (acme, "slow".into(), "DELETED".into(), 30, None),
            (beta, "contacts".into(), "STARTED".into(), 3600, None),
            (beta, "slow".into(), "DELETED".into(), 30, None),
        ]
    );
    let st = s.status("provider_config_key=fakehub&syncs=*").await;
    let frequencies: Vec<(&str, &str)> = st["syncs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            (
                x["connection_id"].as_str().unwrap(),
                x["frequency"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        frequencies,
        [("acme", "every 5 minutes"), ("beta", "every hour")]
    );
    let (status, body) = s
        .api
        .get("/sync/status?provider_config_key=fakehub&syncs=slow")
        .await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"]["code"], "unknown_sync");

    // A removed sync deployed again comes back, paused as it no longer auto-starts.
    let mut functions = project_functions(&["contacts", "slow"]);
    if let scripts::Trigger::Sync(sync) = &mut functions[1].config.trigger {
        sync.auto_start = false;
    }
    s.deploy(functions).await;
    let states: Vec<String> = rows().await.into_iter().map(|r| r.2).collect();
    assert_eq!(states, ["STARTED", "PAUSED", "STARTED", "PAUSED"]);

    // A new connection gets the non-auto-start sync paused; /sync/start starts it.
    let gamma = s.connect("gamma").await;
    let gamma_rows: Vec<_> = rows().await.into_iter().filter(|r| r.0 == gamma).collect();
    assert_eq!(
        gamma_rows
            .iter()
            .map(|r| (r.1.as_str(), r.2.as_str()))
            .collect::<Vec<_>>(),
        [("contacts", "STARTED"), ("slow", "PAUSED")]
    );
    let (status, _) = s
        .api
        .post(
            "/sync/start",
            json!({"provider_config_key": "fakehub", "connection_id": "gamma", "syncs": ["slow"]}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        sqlx::query_scalar::<_, String>(
            "SELECT state::text FROM queue.schedules WHERE connection_id = $1 AND function_name = 'slow'"
        )
        .bind(gamma)
        .fetch_one(&s.ctx.db)
        .await
        .unwrap(),
        "STARTED"
    );

    // Deleting a connection deletes its schedules.
    assert_eq!(
        s.api
            .delete("/connections/beta?provider_config_key=fakehub")
            .await
            .0,
        200
    );
    assert!(rows().await.iter().all(|r| r.0 != beta));
}

#[tokio::test]
async fn sync_routes_check_input_and_keep_environments_apart() {
    let s = setup(Adapters::Local).await;
    s.deploy(project_functions(&["contacts", "slow"])).await;
    s.connect("acme").await;
    s.connect("beta").await;

    // Never run yet: Nango's fields, no result, the first run due.
    let status = s
        .status("provider_config_key=fakehub&syncs=contacts,slow::base&connection_id=acme")
        .await;
    let syncs = status["syncs"].as_array().unwrap();
    assert_eq!(syncs.len(), 2);
    let contacts = &syncs[0];
    assert_eq!(contacts["name"], "contacts");
    assert_eq!(contacts["status"], "SUCCESS");
    assert_eq!(contacts["type"], "INITIAL");
    assert_eq!(contacts["recordCount"], json!({"Contact": 0}));
    assert_eq!(contacts["checkpoint"], Value::Null);
    assert!(contacts.get("latestResult").is_none() && contacts.get("finishedAt").is_none());
    assert!(contacts["nextScheduledSyncAt"].is_string());
    let all = s.status("provider_config_key=fakehub&syncs=*").await;
    assert_eq!(all["syncs"].as_array().unwrap().len(), 4);

    // Without a connection id, a trigger runs the sync of every connection.
    let (status, body) = s
        .api
        .post(
            "/sync/trigger",
            json!({"provider_config_key": "fakehub", "syncs": ["contacts"], "full_resync": true}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let triggered: Vec<(String, Value)> = sqlx::query_as(
        "SELECT payload ->> 'connection_id', payload -> 'full' FROM queue.tasks ORDER BY 1",
    )
    .fetch_all(&s.ctx.db)
    .await
    .unwrap();
    assert_eq!(
        triggered,
        [("acme".into(), json!(true)), ("beta".into(), json!(true))]
    );
    // The Connection-Id and Provider-Config-Key headers name them too (pausing to cancel).
    let response = s
        .api
        .http
        .post(format!("{}/sync/trigger", s.api.base))
        .bearer_auth(&s.api.key)
        .header("Provider-Config-Key", "fakehub")
        .header("Connection-Id", "acme")
        .json(&json!({"syncs": ["contacts"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 409, "acme's run is still queued");

    let bad: Vec<(reqwest::Method, &str, Option<Value>, u16, &str)> = vec![
        (
            reqwest::Method::POST,
            "/sync/trigger",
            Some(json!({"syncs": ["contacts"]})),
            400,
            "missing_provider_config_key",
        ),
        (
            reqwest::Method::POST,
            "/sync/trigger",
            Some(json!({"provider_config_key": "fakehub", "syncs": "contacts"})),
            400,
            "invalid_body",
        ),
        (
            reqwest::Method::POST,
            "/sync/trigger",
            Some(json!({"provider_config_key": "fakehub", "syncs": [], "surprise": 1})),
            400,
            "invalid_body",
        ),
        (
            reqwest::Method::POST,
            "/sync/trigger",
            Some(json!({"provider_config_key": "fakehub", "syncs": [], "sync_mode": "everything"})),
            400,
            "invalid_request",
        ),
        (
            reqwest::Method::POST,
            "/sync/trigger",
            Some(json!({"provider_config_key": "nope", "syncs": []})),
            404,
            "unknown_provider_config",
        ),
        (
            reqwest::Method::POST,
            "/sync/trigger",
            Some(json!({"provider_config_key": "fakehub", "syncs": ["nope"]})),
            404,
            "unknown_sync",
        ),
        (
            reqwest::Method::POST,
            "/sync/trigger",
            Some(json!({"provider_config_key": "fakehub", "connection_id": "zed", "syncs": []})),
            404,
            "unknown_connection",
        ),
        (
            reqwest::Method::POST,
            "/sync/pause",
            Some(json!({"syncs": ["contacts"]})),
            400,
            "invalid_body",
        ),
        (
            reqwest::Method::POST,
            "/sync/pause",
            Some(json!({"provider_config_key": "fakehub", "syncs": ["contacts::eu"]})),
            404,
            "unknown_sync",
        ),
        (
            reqwest::Method::POST,
            "/sync/start",
            Some(
                json!({"provider_config_key": "fakehub", "syncs": [{"name": "contacts", "variant": "eu"}]}),
            ),
            404,
            "unknown_sync",
        ),
        (
            reqwest::Method::POST,
            "/sync/start",
            Some(json!({"provider_config_key": "fakehub", "connection_id": "zed", "syncs": []})),
            404,
            "unknown_connection",
        ),
        (
            reqwest::Method::GET,
            "/sync/status?provider_config_key=fakehub",
            None,
            400,
            "invalid_query_params",
        ),
        (
            reqwest::Method::GET,
            "/sync/status?syncs=*",
            None,
            400,
            "invalid_query_params",
        ),
        (
            reqwest::Method::GET,
            "/sync/status?provider_config_key=fakehub&syncs=,",
            None,
            400,
            "invalid_request",
        ),
        (
            reqwest::Method::GET,
            "/sync/status?provider_config_key=fakehub&syncs=nope",
            None,
            404,
            "unknown_sync",
        ),
        (
            reqwest::Method::GET,
            "/sync/status?provider_config_key=fakehub&syncs=*&connection_id=zed",
            None,
            404,
            "unknown_connection",
        ),
        (
            reqwest::Method::PUT,
            "/sync/update-connection-frequency",
            Some(
                json!({"provider_config_key": "fakehub", "connection_id": "acme", "sync_name": "contacts", "frequency": "every 10s"}),
            ),
            400,
            "invalid_request",
        ),
        (
            reqwest::Method::PUT,
            "/sync/update-connection-frequency",
            Some(
                json!({"provider_config_key": "fakehub", "connection_id": "acme", "sync_name": "contacts", "frequency": "now and then"}),
            ),
            400,
            "invalid_request",
        ),
        (
            reqwest::Method::PUT,
            "/sync/update-connection-frequency",
            Some(
                json!({"provider_config_key": "fakehub", "connection_id": "acme", "sync_name": "nope", "frequency": null}),
            ),
            404,
            "unknown_sync",
        ),
        (
            reqwest::Method::PUT,
            "/sync/update-connection-frequency",
            Some(
                json!({"provider_config_key": "fakehub", "connection_id": "zed", "sync_name": "contacts", "frequency": null}),
            ),
            404,
            "unknown_connection",
        ),
        (
            reqwest::Method::PUT,
            "/sync/update-connection-frequency",
            Some(
                json!({"provider_config_key": "fakehub", "sync_name": "contacts", "frequency": null}),
            ),
            400,
            "invalid_body",
        ),
    ];
    for (method, path, body, want, code) in bad {
        let (status, answer) = s.api.call(method.clone(), path, body.clone()).await;
        assert_eq!(
            (status, answer["error"]["code"].as_str().unwrap_or_default()),
            (want, code),
            "{method} {path} {body:?}: {answer}"
        );
    }
    let (_, answer) = s
        .api
        .call(
            reqwest::Method::PUT,
            "/sync/update-connection-frequency",
            Some(
                json!({"provider_config_key": "fakehub", "connection_id": "acme",
                        "sync_name": "contacts", "frequency": "every 10s"}),
            ),
        )
        .await;
    assert_eq!(answer["error"]["errors"][0]["field"], "frequency");

    // Every route wants the secret key.
    let anonymous = Api::new(&s.api.base, "not-a-key");
    for (method, path) in [
        (reqwest::Method::POST, "/sync/trigger"),
        (reqwest::Method::POST, "/sync/pause"),
        (reqwest::Method::POST, "/sync/start"),
        (
            reqwest::Method::GET,
            "/sync/status?provider_config_key=fakehub&syncs=*",
        ),
        (reqwest::Method::PUT, "/sync/update-connection-frequency"),
    ] {
        let (status, _) = anonymous.call(method.clone(), path, Some(json!({}))).await;
        assert_eq!(status, 401, "{method} {path}");
    }

    // Another environment with an integration of the same key sees none of this one's syncs,
    // connections or runs, and cannot change them.
    let (_, other_key) = environments::create(&s.ctx.db, "other").await.unwrap();
    let other = Api::new(&s.api.base, &other_key);
    assert_eq!(
        other
            .post(
                "/integrations",
                json!({"provider": "fakehub", "unique_key": "fakehub"})
            )
            .await
            .0,
        200
    );
    let selection =
        json!({"provider_config_key": "fakehub", "connection_id": "acme", "syncs": ["contacts"]});
    for (method, path, body) in [
        (
            reqwest::Method::POST,
            "/sync/trigger",
            Some(selection.clone()),
        ),
        (
            reqwest::Method::POST,
            "/sync/pause",
            Some(selection.clone()),
        ),
        (
            reqwest::Method::POST,
            "/sync/start",
            Some(selection.clone()),
        ),
        (
            reqwest::Method::GET,
            "/sync/status?provider_config_key=fakehub&syncs=contacts&connection_id=acme",
            None,
        ),
        (
            reqwest::Method::PUT,
            "/sync/update-connection-frequency",
            Some(
                json!({"provider_config_key": "fakehub", "connection_id": "acme",
                        "sync_name": "contacts", "frequency": "every 2 hours"}),
            ),
        ),
    ] {
        let (status, answer) = other.call(method.clone(), path, body).await;
        assert_eq!(status, 404, "{method} {path}: {answer}");
        assert_eq!(
            answer["error"]["code"], "unknown_connection",
            "{method} {path}"
        );
    }
    let (status, answer) = other
        .get("/sync/status?provider_config_key=fakehub&syncs=*")
        .await;
    assert_eq!((status, &answer), (200, &json!({"syncs": []})));
    let (status, answer) = other
        .post(
            "/sync/trigger",
            json!({"provider_config_key": "fakehub", "syncs": ["contacts"]}),
        )
        .await;
    assert_eq!(status, 404, "{answer}");
    assert_eq!(answer["error"]["code"], "unknown_sync");
    let (status, answer) = other
        .post(
            "/sync/pause",
            json!({"provider_config_key": "fakehub", "syncs": []}),
        )
        .await;
    assert_eq!(status, 404, "{answer}");
    assert_eq!(answer["error"]["code"], "no_syncs_found");
    // Nothing changed here.
    let states: Vec<String> =
        sqlx::query_scalar("SELECT DISTINCT state::text FROM queue.schedules")
            .fetch_all(&s.ctx.db)
            .await
            .unwrap();
    assert_eq!(states, ["STARTED"]);
    let frequencies: Vec<Option<String>> =
        sqlx::query_scalar("SELECT DISTINCT frequency_override FROM queue.schedules")
            .fetch_all(&s.ctx.db)
            .await
            .unwrap();
    assert_eq!(frequencies, [None]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nangos_node_client_drives_the_sync_api() {
    let s = setup(Adapters::Local).await;
    for n in 1..=3 {
        s.upstream
            .put_contact(&format!("c{n}"), &format!("Contact {n}"));
    }
    s.deploy(project_functions(&["contacts"])).await;
    let connection = s.connect("acme").await;
    let schedule = s.schedule_id(connection, "contacts").await;
    let workers = Workers::start(s.ctx.clone());
    s.wait_task(schedule, 0, TaskState::Succeeded).await;

    let stdout = run_node_client(
        "sync-client.mjs",
        &[
            ("LASSO_HOST", &s.api.base),
            ("LASSO_SECRET_KEY", &s.api.key),
        ],
    )
    .await;
    assert!(
        stdout.contains("ok errors"),
        "the script stopped early:\n{stdout}"
    );
    workers.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_sync_run_sends_a_signed_failure_webhook() {
    let s = setup(Adapters::Local).await;
    s.upstream.contacts_down.store(true, Ordering::SeqCst);
    s.deploy(project_functions(&["contacts"])).await;
    let connection = s.connect("acme").await;
    let schedule = s.schedule_id(connection, "contacts").await;
    let workers = Workers::start(s.ctx.clone());
    let failed = s.wait_task(schedule, 0, TaskState::Failed).await;
    let hook = s.hooks.wait_for(1, Duration::from_secs(10)).await.remove(0);
    assert!(hook.signed_with(&s.hook_secret));
    let body = hook.json();
    assert_eq!(body["type"], "sync");
    assert_eq!(body["success"], false);
    assert_eq!(body["connectionId"], "acme");
    assert_eq!(body["syncName"], "contacts");
    assert_eq!(body["model"], "Contact");
    assert_eq!(body["syncType"], "INITIAL");
    assert_eq!(body["startedAt"], ms(failed.started_at.unwrap()));
    assert!(body["failedAt"].is_string());
    let description = body["error"]["description"].as_str().unwrap();
    assert!(description.contains("500"), "{body}");
    assert!(!description.contains("fk_secret"), "{body}");
    let status = s
        .status("provider_config_key=fakehub&syncs=contacts&connection_id=acme")
        .await;
    assert_eq!(status["syncs"][0]["status"], "ERROR", "{status}");
    workers.stop().await;
}
