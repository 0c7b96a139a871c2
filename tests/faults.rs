//! Faults under load, on the AWS adapters (moto's S3 and SQS, Elasticsearch as the OpenSearch log
//! store) with the four functions in their own processes (`cargo lambda watch` + `lasso
//! emulate`): a Postgres crash (`pg_ctl restart -m immediate`), moto frozen for 30 s, and
//! Elasticsearch frozen for 30 s (SIGSTOP then SIGCONT: the port accepts connections and never
//! answers). Each asserts that no scheduled run was lost or run twice and that every connection's
//! records equal what the fake provider serves, and prints its figures (recovery times, retries).
//!
//! Ignored: they crash and freeze the services they run against, so they must not share them
//! with other tests. `scripts/faults` (`make faults`) starts a private set and runs them.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use chrono::{DateTime, Utc};
use lasso_services::scripts::{DeployRequest, Trigger};
use lasso_services::{Context, EnvironmentId, environments};
use lasso_tests::contacts::{Upstream, list_contacts};
use lasso_tests::lambda::{Emulator, Watch, start_watch, workspace_root};
use lasso_tests::*;
use serde_json::{Value, json};
use uuid::Uuid;

/// Connections, each with one sync schedule: enough that a batch of runs is in flight when the
/// fault hits.
const CONNECTIONS: usize = 30;
/// The syncs' frequency: longer than a 30 s freeze, so a run delayed by the fault still ends
/// before its schedule's next slot and every slot gets a run of its own.
const EVERY_SECS: i64 = 60;
const FREEZE: Duration = Duration::from_secs(30);
/// Slots after the one the fault hits: the run's end.
const SLOTS_AFTER_FAULT: i64 = 2;

#[derive(Clone, Copy, Debug)]
enum Fault {
    PostgresCrash,
    MotoFrozen,
    ElasticsearchFrozen,
}

impl Fault {
    fn name(self) -> &'static str {
        match self {
            Fault::PostgresCrash => "postgres: pg_ctl restart -m immediate",
            Fault::MotoFrozen => "moto (S3, SQS): SIGSTOP for 30 s",
            Fault::ElasticsearchFrozen => "elasticsearch: SIGSTOP for 30 s",
        }
    }

    /// Runs the fault; returns when it is over (the service answers again).
    fn inflict(self) {
        match self {
            Fault::PostgresCrash => services(&["crash-restart", "pg"]),
            Fault::MotoFrozen | Fault::ElasticsearchFrozen => {
                let service = if matches!(self, Fault::MotoFrozen) {
                    "moto"
                } else {
                    "es"
                };
                services(&["freeze", service]);
                std::thread::sleep(FREEZE);
                services(&["thaw", service]);
            }
        }
    }
}

/// `scripts/services <args>` on this run's services (LASSO_SERVICES_DIR and the ports come
/// from the environment `scripts/faults` sets).
fn services(args: &[&str]) {
    let status = Command::new(workspace_root().join("scripts/services"))
        .args(args)
        .status()
        .expect("scripts/services runs");
    assert!(status.success(), "scripts/services {args:?} failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "crashes Postgres: run through scripts/faults (make faults)"]
async fn postgres_crash_restart_under_load() {
    under_load(Fault::PostgresCrash).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "freezes moto: run through scripts/faults (make faults)"]
async fn moto_frozen_under_load() {
    under_load(Fault::MotoFrozen).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "freezes Elasticsearch: run through scripts/faults (make faults)"]
async fn elasticsearch_frozen_under_load() {
    under_load(Fault::ElasticsearchFrozen).await;
}

/// One task row of the environment's sync runs.
#[derive(Debug, sqlx::FromRow)]
struct Run {
    id: Uuid,
    retry_of: Option<Uuid>,
    schedule_id: Uuid,
    schedule_created_at: DateTime<Utc>,
    state: String,
    attempt: i32,
    dispatch_count: i32,
    created_at: DateTime<Utc>,
    completed_at: Option<DateTime<Utc>>,
}

/// The environment's sync tasks; None while the database does not answer (mid-fault).
async fn runs(db: &sqlx::PgPool, environment_id: EnvironmentId) -> Option<Vec<Run>> {
    sqlx::query_as(
        "SELECT t.id, t.retry_of, t.schedule_id, s.created_at AS schedule_created_at,
                t.state::text AS state, t.attempt, t.dispatch_count, t.created_at, t.completed_at
         FROM queue.tasks t JOIN queue.schedules s ON s.id = t.schedule_id
         WHERE t.environment_id = $1
         ORDER BY t.created_at",
    )
    .bind(environment_id)
    .fetch_all(db)
    .await
    .ok()
}

/// The slot a first attempt belongs to: its schedule's first run is slot 0, then one a minute.
fn slot(run: &Run) -> i64 {
    (run.created_at - run.schedule_created_at).num_milliseconds() / (EVERY_SECS * 1000)
}

fn terminal(state: &str) -> bool {
    matches!(state, "SUCCEEDED" | "FAILED" | "EXPIRED" | "CANCELLED")
}

/// Probe results: when, and whether the api answered 200.
type Probes = Arc<std::sync::Mutex<Vec<(DateTime<Utc>, bool)>>>;

/// Polls the api once a second (GET /connections through the api function) and notes when it
/// answered 200.
struct Probe {
    ok_at: Probes,
    stop: Arc<AtomicBool>,
}

impl Probe {
    fn start(api: Api) -> Self {
        let probe = Self {
            ok_at: Default::default(),
            stop: Default::default(),
        };
        let (ok_at, stop) = (probe.ok_at.clone(), probe.stop.clone());
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap();
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let ok = http
                    .get(format!("{}/connections", api.base))
                    .bearer_auth(&api.key)
                    .send()
                    .await
                    .is_ok_and(|r| r.status() == 200);
                ok_at.lock().unwrap().push((Utc::now(), ok));
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        probe
    }

    /// (failed probes, first success after `at`).
    fn after(&self, at: DateTime<Utc>) -> (usize, Option<DateTime<Utc>>) {
        let seen = self.ok_at.lock().unwrap();
        let failed = seen.iter().filter(|(_, ok)| !ok).count();
        let first = seen.iter().find(|(t, ok)| *ok && *t >= at).map(|(t, _)| *t);
        (failed, first)
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

async fn under_load(fault: Fault) {
    let upstream = Arc::new(Upstream::default());
    for n in 1..=20 {
        upstream.put(&format!("c{n}"), &format!("Contact {n}"));
    }
    let upstream_url = serve(
        Router::new()
            .route("/contacts", get(list_contacts))
            .with_state(upstream.clone()),
    )
    .await;
    let db = fresh_database().await;
    let bucket = create_bucket().await;
    let queue = create_queue(60).await;
    let settings = vec![
        ("LASSO_DATABASE_URL", db.url.clone()),
        ("LASSO_ENCRYPTION_KEY", TEST_ENCRYPTION_KEY.to_string()),
        ("LASSO_SCRIPT_STORE", format!("s3://{bucket}/scripts")),
        ("LASSO_TASK_TRANSPORT", "sqs".to_string()),
        ("LASSO_RUNNER_QUEUE_URL", queue.clone()),
        ("LASSO_LOG_SINK", "opensearch".to_string()),
        ("LASSO_OPENSEARCH_URL", elasticsearch_url()),
        (
            "LASSO_OPENSEARCH_INDEX_PREFIX",
            unique("faults").replace('-', "_"),
        ),
        (
            "LASSO_PROVIDERS_FILE",
            lasso_tests::fakehub::catalog(&upstream_url)
                .display()
                .to_string(),
        ),
        ("AWS_ENDPOINT_URL", aws_endpoint()),
        ("AWS_ACCESS_KEY_ID", "test".to_string()),
        ("AWS_SECRET_ACCESS_KEY", "test".to_string()),
        ("AWS_REGION", "us-east-1".to_string()),
    ];
    let config = config(&db, &settings);
    let ctx = Context::build(config.clone(), Some(aws_sdk_config())).unwrap();
    let (env, key) = environments::create(&ctx.db, "faults").await.unwrap();
    let watch = start_watch(&settings).await;
    let api = Api::new(&format!("{}/lambda-url/api", watch.endpoint), &key);
    deploy(&api, &watch).await;

    let emulator = Emulator::start(&config, &watch);

    for n in 0..CONNECTIONS {
        let (status, body) = api
            .post(
                "/connections",
                json!({"provider_config_key": "fakehub", "connection_id": format!("conn{n}"),
                       "credentials": {"type": "API_KEY", "apiKey": "fk_secret"}}),
            )
            .await;
        assert_eq!(status, 201, "{body}\n{}", watch.log());
    }
    let probe = Probe::start(api.clone());

    // The upstream changes between runs, so every run has something to save.
    let changing = Arc::new(AtomicBool::new(true));
    let changer = tokio::spawn({
        let (upstream, changing) = (upstream.clone(), changing.clone());
        async move {
            let mut n = 20;
            loop {
                tokio::time::sleep(Duration::from_secs(20)).await;
                // Checked after the sleep: a contact added once the upstream should be steady
                // could land after the last slot's run and be missing for no fault of Lasso's.
                if !changing.load(Ordering::Relaxed) {
                    break;
                }
                n += 1;
                upstream.put(&format!("c{n}"), &format!("Contact {n}"));
            }
        }
    });

    // Slot 0 runs, then the fault hits as soon as slot 1's runs exist, while they are dispatched
    // and run.
    wait_for(&watch, "slot 1's runs to be created", || async {
        let runs = runs(&db.pool, env.id).await?;
        runs.iter()
            .any(|r| r.retry_of.is_none() && slot(r) == 1)
            .then_some(())
    })
    .await;
    let first_slot = runs(&db.pool, env.id)
        .await
        .unwrap()
        .iter()
        .map(|r| r.schedule_created_at)
        .min()
        .unwrap();
    let fault_start = Utc::now();
    tokio::task::spawn_blocking(move || fault.inflict())
        .await
        .unwrap();
    let fault_end = Utc::now();
    eprintln!("{}: from {fault_start} to {fault_end}", fault.name());

    // Recovery: the first run to succeed after the fault, and the backlog (every run created by
    // the fault's end, with its retries) done.
    let first_success = wait_for(&watch, "a run to succeed after the fault", || async {
        let runs = runs(&db.pool, env.id).await?;
        runs.iter()
            .filter_map(|r| r.completed_at.filter(|_| r.state == "SUCCEEDED"))
            .filter(|at| *at > fault_end)
            .min()
    })
    .await;
    let drained = wait_for(&watch, "the backlog to drain after the fault", || async {
        let runs = runs(&db.pool, env.id).await?;
        let backlog = || {
            runs.iter()
                .filter(|r| r.created_at <= fault_end || r.retry_of.is_some())
        };
        backlog().all(|r| terminal(&r.state)).then(|| {
            backlog()
                .filter_map(|r| r.completed_at)
                .max()
                .unwrap_or(fault_end)
        })
    })
    .await;

    // Two more slots after the fault's, the upstream steady for the last one; then every slot up
    // to there must have had exactly one run, and it must have succeeded.
    let last_slot = 1 + SLOTS_AFTER_FAULT;
    let slot_at = |s: i64| first_slot + chrono::TimeDelta::seconds(s * EVERY_SECS);
    sleep_until(slot_at(last_slot) - chrono::TimeDelta::seconds(10)).await;
    changing.store(false, Ordering::Relaxed);
    changer.await.unwrap();
    // The scheduler ticks every 10 s: by then the last slot's runs exist.
    sleep_until(slot_at(last_slot) + chrono::TimeDelta::seconds(20)).await;
    let final_runs = wait_for(&watch, "the last slot's runs to end", || async {
        let runs = runs(&db.pool, env.id).await?;
        runs.iter()
            .filter(|r| slot(r) <= last_slot || r.retry_of.is_some())
            .all(|r| terminal(&r.state))
            .then_some(runs)
    })
    .await;
    let probe_failures_and_recovery = probe.after(fault_end);
    drop(probe);
    emulator.stop().await;

    let mut per_schedule: BTreeMap<Uuid, BTreeMap<i64, Vec<&Run>>> = BTreeMap::new();
    for run in final_runs.iter().filter(|r| r.retry_of.is_none()) {
        let s = slot(run);
        if s <= last_slot {
            per_schedule
                .entry(run.schedule_id)
                .or_default()
                .entry(s)
                .or_default()
                .push(run);
        }
    }
    assert_eq!(per_schedule.len(), CONNECTIONS, "every schedule ran");
    let final_state = |run: &Run| -> String {
        // The last attempt of a run's retry chain.
        let mut current = run;
        while let Some(next) = final_runs.iter().find(|r| r.retry_of == Some(current.id)) {
            current = next;
        }
        current.state.clone()
    };
    for (schedule, slots) in &per_schedule {
        let seen: Vec<i64> = slots.keys().copied().collect();
        assert_eq!(
            seen,
            (0..=last_slot).collect::<Vec<_>>(),
            "schedule {schedule}: a slot was skipped"
        );
        for (s, runs) in slots {
            assert_eq!(
                runs.len(),
                1,
                "schedule {schedule}: slot {s} ran twice: {runs:?}"
            );
            assert_eq!(
                final_state(runs[0]),
                "SUCCEEDED",
                "schedule {schedule}: slot {s}: {runs:?}"
            );
        }
    }

    // Every connection holds exactly the upstream's contacts, read through the api function.
    let expected: BTreeSet<(String, String)> = upstream
        .contacts
        .lock()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["id"].as_str().unwrap().to_string(),
                c["name"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for n in 0..CONNECTIONS {
        let records = all_records(&api, &format!("conn{n}")).await;
        let ids: BTreeSet<(String, String)> = records.iter().cloned().collect();
        assert_eq!(ids.len(), records.len(), "conn{n}: duplicate records");
        assert_eq!(ids, expected, "conn{n}: records differ from the upstream's");
    }

    let retried = final_runs.iter().filter(|r| r.retry_of.is_some()).count();
    let redispatched: i32 = final_runs
        .iter()
        .map(|r| (r.dispatch_count - 1).max(0))
        .sum();
    let log = watch.log();
    let figures = json!({
        "fault": fault.name(),
        "connections": CONNECTIONS,
        "slots_checked": last_slot + 1,
        "runs": final_runs.iter().filter(|r| slot(r) <= last_slot && r.retry_of.is_none()).count(),
        "fault_secs": secs(fault_end - fault_start),
        "first_success_after_fault_secs": secs(first_success - fault_end),
        "backlog_drained_after_fault_secs": secs((drained - fault_end).max(chrono::TimeDelta::zero())),
        "api_first_ok_after_fault_secs": probe_failures_and_recovery.1.map(|t| secs(t - fault_end)),
        "api_failed_probes": probe_failures_and_recovery.0,
        "retried_attempts": retried,
        "max_attempt": final_runs.iter().map(|r| r.attempt).max(),
        "redispatched": redispatched,
        "duplicate_deliveries_ignored": log.matches("duplicate delivery ignored").count(),
        "messages_not_processed": log.matches("message not processed").count(),
        "log_entries_dropped": log.matches("operation log dropped").count(),
        "function_errors_logged": log.matches("\"level\":\"ERROR\"").count(),
        "assertions": "every slot ran exactly once and succeeded; records equal the upstream's",
    });
    println!("FAULT-FIGURES {figures}");
    if let Ok(path) = std::env::var("LASSO_FAULTS_REPORT") {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        writeln!(file, "{figures}").unwrap();
    }
}

async fn sleep_until(at: DateTime<Utc>) {
    if let Ok(left) = (at - Utc::now()).to_std() {
        tokio::time::sleep(left).await;
    }
}

fn secs(d: chrono::TimeDelta) -> f64 {
    (d.num_milliseconds() as f64 / 100.0).round() / 10.0
}

/// Polls `check` once a second for up to ten minutes; a timeout shows the functions' log.
async fn wait_for<T, F, Fut>(watch: &Watch, what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    lasso_tests::lambda::until(watch, what, check).await
}

/// The integration and the `contacts` sync (every minute) through the api function.
async fn deploy(api: &Api, watch: &Watch) {
    let (status, body) = api
        .post(
            "/integrations",
            json!({"provider": "fakehub", "unique_key": "fakehub"}),
        )
        .await;
    assert_eq!(status, 200, "{body}\n{}", watch.log());
    let project =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/schedules-project");
    let mut functions: Vec<_> = lasso_compile::compile(&project)
        .unwrap()
        .functions
        .into_iter()
        .filter(|f| f.name == "contacts")
        .collect();
    for f in &mut functions {
        if let Trigger::Sync(sync) = &mut f.config.trigger {
            sync.runs = "every 1m".to_string();
            sync.frequency_secs = EVERY_SECS as u64;
        }
    }
    let (status, body) = api
        .post(
            "/scripts/deploy",
            serde_json::to_value(DeployRequest {
                integration: None,
                functions,
            })
            .unwrap(),
        )
        .await;
    assert_eq!(status, 200, "{body}");
}

/// A connection's Contact records as (id, name), every page, through the api function.
async fn all_records(api: &Api, connection: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut cursor = String::new();
    loop {
        let response = api
            .http
            .get(format!(
                "{}/records?model=Contact&limit=100&cursor={cursor}",
                api.base
            ))
            .bearer_auth(&api.key)
            .header("Connection-Id", connection)
            .header("Provider-Config-Key", "fakehub")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let page: Value = response.json().await.unwrap();
        for r in page["records"].as_array().unwrap() {
            out.push((
                r["id"].as_str().unwrap().to_string(),
                r["name"].as_str().unwrap().to_string(),
            ));
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = c.to_string(),
            None => return out,
        }
    }
}
