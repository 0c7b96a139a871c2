//! The dispatcher: per-environment concurrency under concurrent dispatchers and runners,
//! fairness across environments, release on a failed send, and re-sending stuck tasks.

use lasso_services::EnvironmentId;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use lasso_runner::run::{self as runner, Outcome};
use lasso_services::adapters::transport::RunnerQueues;
use lasso_services::queue::{NewTask, Payload, TaskState, tasks};
use lasso_services::{Context, dispatcher, environments};
use lasso_tests::*;
use serde_json::json;
use tokio::task::JoinSet;
use uuid::Uuid;

/// A task that takes a few milliseconds, so runs overlap.
const SLEEPER: &str = "export default async function (nango, input) {
    await new Promise((r) => setTimeout(r, 5));
    return input.n;
}";

const LIMIT: i64 = 5;

/// Contexts on one database, each with its own pool (so dispatchers really claim at once),
/// sharing one script directory and one in-process task queue.
struct Cluster {
    db: TestDb,
    scripts: String,
    queues: Arc<RunnerQueues>,
}

impl Cluster {
    async fn new() -> Self {
        Self {
            db: fresh_database().await,
            scripts: temp_dir("lasso-scripts").display().to_string(),
            queues: Arc::new(RunnerQueues::local()),
        }
    }

    /// A context, with the sleeper script put in the shared script store.
    async fn with_sleeper(&self) -> Context {
        let ctx = self.context();
        ctx.scripts
            .put("sleeper.js", Bytes::from_static(SLEEPER.as_bytes()))
            .await
            .unwrap();
        ctx
    }

    fn context(&self) -> Context {
        let cfg = config(
            &self.db,
            &[
                ("LASSO_SCRIPT_STORE", self.scripts.clone()),
                ("LASSO_ENVIRONMENT_CONCURRENCY", LIMIT.to_string()),
                ("LASSO_DB_MAX_CONNECTIONS", "12".into()),
            ],
        );
        let mut ctx = Context::build(cfg, None).expect("context");
        ctx.queues = self.queues.clone();
        ctx
    }
}

fn sleeper_task(env: EnvironmentId, n: usize) -> NewTask {
    NewTask::new(
        env,
        lasso_services::queue::TaskKind::Script,
        "sleeper",
        Payload::script("sleeper.js", json!({"n": n})),
    )
}

/// Dispatches in a loop until `stop`, pausing briefly when there was nothing to claim.
fn spawn_dispatcher(set: &mut JoinSet<()>, ctx: Context, stop: Arc<AtomicBool>) {
    set.spawn(async move {
        while !stop.load(Ordering::Relaxed) {
            let report = dispatcher::dispatch_all(&ctx).await.expect("dispatch");
            if report.claimed == 0 {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
    });
}

/// Receives batches of messages and runs them concurrently, as the runner function does with an
/// SQS batch; returns every outcome it saw.
fn spawn_runner(
    set: &mut JoinSet<Vec<Outcome>>,
    ctx: Context,
    stop: Arc<AtomicBool>,
) -> tokio::task::AbortHandle {
    set.spawn(async move {
        let mut outcomes = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let deliveries = ctx
                .transport()
                .receive(10, Duration::from_millis(20), Duration::from_secs(30))
                .await
                .expect("receive");
            let results = futures::future::join_all(
                deliveries
                    .iter()
                    .map(|d| runner::process_message(&ctx, &d.body)),
            )
            .await;
            let receipts: Vec<String> = deliveries
                .iter()
                .map(|d| d.receipt_handle.clone())
                .collect();
            for r in results {
                outcomes.push(r.expect("every message is processed"));
            }
            ctx.transport().delete(&receipts).await.expect("delete");
        }
        outcomes
    })
}

/// Counts DISPATCHED + STARTED tasks per group every few milliseconds until `stop`; returns the
/// highest count seen per group and the number of samples.
fn spawn_sampler(
    pool: sqlx::PgPool,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<(HashMap<String, i64>, usize)> {
    tokio::spawn(async move {
        let mut conn = pool.acquire().await.expect("sampler connection");
        let mut highest: HashMap<String, i64> = HashMap::new();
        let mut samples = 0;
        while !stop.load(Ordering::Relaxed) {
            let rows: Vec<(String, i64)> = sqlx::query_as(
                "SELECT group_key, count(*) FROM queue.tasks
                 WHERE state IN ('DISPATCHED', 'STARTED') GROUP BY group_key",
            )
            .fetch_all(&mut *conn)
            .await
            .expect("sample");
            for (group, n) in rows {
                let top = highest.entry(group).or_default();
                *top = (*top).max(n);
            }
            samples += 1;
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        (highest, samples)
    })
}

async fn count_in_state(ctx: &Context, env: EnvironmentId, state: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM queue.tasks WHERE environment_id = $1 AND state::text = $2",
    )
    .bind(env)
    .bind(state)
    .fetch_one(&ctx.db)
    .await
    .unwrap()
}

async fn every_task_finished(ctx: &Context) {
    eventually("every task to finish", Duration::from_secs(120), || async {
        let open: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM queue.tasks WHERE state NOT IN ('SUCCEEDED', 'FAILED', 'EXPIRED')",
        )
        .fetch_one(&ctx.db)
        .await
        .unwrap();
        (open == 0).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_environment_limit_holds_with_concurrent_dispatchers_and_runners() {
    let cluster = Cluster::new().await;
    let ctx = cluster.with_sleeper().await;
    let mut envs = Vec::new();
    for (name, count) in [("big", 600), ("medium", 300), ("small", 100)] {
        let (env, _) = environments::create(&ctx.db, name).await.unwrap();
        envs.push((env.id, count));
    }
    let mut expected: HashMap<Uuid, usize> = HashMap::new();
    for (env, count) in &envs {
        let new: Vec<NewTask> = (0..*count).map(|n| sleeper_task(*env, n)).collect();
        let ids = tasks::insert(&ctx.db, &new).await.unwrap();
        expected.extend(ids.into_iter().zip(0..*count));
    }
    assert_eq!(expected.len(), 1000);

    let stop = Arc::new(AtomicBool::new(false));
    let sampler = spawn_sampler(ctx.db.clone(), stop.clone());
    let mut dispatchers = JoinSet::new();
    for _ in 0..3 {
        spawn_dispatcher(&mut dispatchers, cluster.context(), stop.clone());
    }
    let mut runners = JoinSet::new();
    for _ in 0..4 {
        spawn_runner(&mut runners, cluster.context(), stop.clone());
    }

    every_task_finished(&ctx).await;
    stop.store(true, Ordering::Relaxed);
    dispatchers.join_all().await;
    let outcomes: Vec<Outcome> = runners.join_all().await.into_iter().flatten().collect();
    let (highest, samples) = sampler.await.unwrap();

    // Never above the limit, and the limit was reached: the runners had room for more.
    assert!(
        samples > 50,
        "the sampler ran throughout ({samples} samples)"
    );
    for (env, _) in &envs {
        let top = highest.get(&format!("env:{env}")).copied().unwrap_or(0);
        assert!(top <= LIMIT, "env:{env} had {top} tasks running at once");
    }
    assert_eq!(highest.get(&format!("env:{}", envs[0].0)), Some(&LIMIT));

    // Every task succeeded, once, with its own output.
    let mut succeeded: HashMap<Uuid, usize> = HashMap::new();
    for outcome in &outcomes {
        match outcome {
            Outcome::Succeeded(id) => *succeeded.entry(*id).or_default() += 1,
            Outcome::Failed(id) => panic!("task {id} failed"),
            Outcome::Refused(id) => panic!("task {id} refused"),
            Outcome::Skipped(_) => {}
        }
    }
    assert_eq!(succeeded.len(), 1000);
    assert!(succeeded.values().all(|&n| n == 1), "a task ran twice");
    let rows: Vec<(Uuid, String, Option<serde_json::Value>)> =
        sqlx::query_as("SELECT id, state::text, output FROM queue.tasks")
            .fetch_all(&ctx.db)
            .await
            .unwrap();
    assert_eq!(rows.len(), 1000);
    for (id, state, output) in rows {
        assert_eq!(state, "SUCCEEDED", "task {id}");
        assert_eq!(output, Some(json!(expected[&id])), "task {id}");
    }
}

#[tokio::test]
async fn claims_share_out_the_batch_and_skip_full_groups() {
    let db = fresh_database().await;
    let ctx = local_context(&db).await;
    let mut big = Vec::new();
    for name in ["a", "b", "c"] {
        let (env, _) = environments::create(&ctx.db, name).await.unwrap();
        let new: Vec<NewTask> = (0..50).map(|n| sleeper_task(env.id, n)).collect();
        tasks::insert(&ctx.db, &new).await.unwrap();
        big.push(env.id);
    }
    // Three busy environments fill up to their limit, and no further.
    let claim = tasks::claim_for_dispatch(&ctx.db, 100, LIMIT)
        .await
        .unwrap();
    assert!(!claim.ready_left_behind, "each group had room");
    let claimed = claim.tasks;
    assert_eq!(claimed.len(), 15);
    for env in &big {
        assert_eq!(
            claimed.iter().filter(|t| t.environment_id == *env).count(),
            5
        );
    }
    let full = tasks::claim_for_dispatch(&ctx.db, 100, LIMIT)
        .await
        .unwrap();
    assert!(full.tasks.is_empty());
    assert!(full.ready_left_behind, "their tasks wait for room");

    // A newcomer is served at once, although the full environments' tasks are older.
    let (small, _) = environments::create(&ctx.db, "small").await.unwrap();
    let new: Vec<NewTask> = (0..3).map(|n| sleeper_task(small.id, n)).collect();
    tasks::insert(&ctx.db, &new).await.unwrap();
    let claimed = tasks::claim_for_dispatch(&ctx.db, 1, LIMIT)
        .await
        .unwrap()
        .tasks;
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].environment_id, small.id);

    // With room everywhere, a small batch goes round the groups rather than to the oldest one.
    tasks::release_dispatch(
        &ctx.db,
        &sqlx::query_scalar::<_, Uuid>("SELECT id FROM queue.tasks WHERE state = 'DISPATCHED'")
            .fetch_all(&ctx.db)
            .await
            .unwrap(),
    )
    .await
    .unwrap();
    let claimed = tasks::claim_for_dispatch(&ctx.db, 4, LIMIT)
        .await
        .unwrap()
        .tasks;
    let mut envs: Vec<EnvironmentId> = claimed.iter().map(|t| t.environment_id).collect();
    envs.sort();
    let mut all = big.clone();
    all.push(small.id);
    assert_eq!(envs, all);
}

#[tokio::test]
async fn a_task_enqueued_at_once_goes_out_only_with_room_and_nothing_older_waiting() {
    let db = fresh_database().await;
    let ctx = local_context(&db).await;
    let (env, _) = environments::create(&ctx.db, "e").await.unwrap();

    // An idle group: dispatched in the insert, with its runner group to send it to.
    let (task, group) = tasks::insert_dispatched(&ctx.db, &sleeper_task(env.id, 0), LIMIT)
        .await
        .unwrap();
    assert_eq!(task.state, TaskState::Dispatched);
    assert_eq!(group.as_deref(), Some("shared"));
    let dispatched_at: Option<chrono::DateTime<chrono::Utc>> =
        sqlx::query_scalar("SELECT dispatched_at FROM queue.tasks WHERE id = $1")
            .bind(task.id)
            .fetch_one(&ctx.db)
            .await
            .unwrap();
    assert!(dispatched_at.is_some());

    // An older task waiting for the dispatcher keeps its turn.
    tasks::insert(&ctx.db, &[sleeper_task(env.id, 1)])
        .await
        .unwrap();
    let (task, group) = tasks::insert_dispatched(&ctx.db, &sleeper_task(env.id, 2), LIMIT)
        .await
        .unwrap();
    assert_eq!((task.state, group), (TaskState::Created, None));

    // A full group: CREATED, and the dispatcher cannot send it either.
    tasks::claim_for_dispatch(&ctx.db, 100, LIMIT)
        .await
        .unwrap();
    assert_eq!(count_in_state(&ctx, env.id, "DISPATCHED").await, 3);
    let (task, group) = tasks::insert_dispatched(&ctx.db, &sleeper_task(env.id, 3), 3)
        .await
        .unwrap();
    assert_eq!((task.state, group), (TaskState::Created, None));

    // `enqueue_now` puts the message of a dispatched task on its group's queue.
    let (other, _) = environments::create(&ctx.db, "other").await.unwrap();
    let id = dispatcher::enqueue_now(&ctx, &sleeper_task(other.id, 4))
        .await
        .unwrap();
    let deliveries = ctx
        .transport()
        .receive(10, Duration::from_millis(100), Duration::from_secs(30))
        .await
        .unwrap();
    let sent: Vec<Uuid> = deliveries
        .iter()
        .map(|d| {
            serde_json::from_str::<lasso_services::queue::TaskMessage>(&d.body)
                .unwrap()
                .task_id
        })
        .collect();
    assert_eq!(sent, vec![id]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_limit_holds_when_callers_enqueue_at_once_beside_the_dispatchers() {
    let cluster = Cluster::new().await;
    let ctx = cluster.with_sleeper().await;
    let (env, _) = environments::create(&ctx.db, "busy").await.unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let sampler = spawn_sampler(ctx.db.clone(), stop.clone());
    let mut dispatchers = JoinSet::new();
    for _ in 0..2 {
        spawn_dispatcher(&mut dispatchers, cluster.context(), stop.clone());
    }
    let mut runners = JoinSet::new();
    for _ in 0..3 {
        spawn_runner(&mut runners, cluster.context(), stop.clone());
    }
    // Four callers enqueue at once, as concurrent action triggers do: while the group has room
    // their tasks go out directly; past it they wait for the dispatchers.
    let mut callers = JoinSet::new();
    for c in 0..4 {
        let ctx = cluster.context();
        callers.spawn(async move {
            for n in 0..75 {
                dispatcher::enqueue_now(&ctx, &sleeper_task(env.id, c * 75 + n))
                    .await
                    .unwrap();
            }
        });
    }
    callers.join_all().await;

    every_task_finished(&ctx).await;
    stop.store(true, Ordering::Relaxed);
    dispatchers.join_all().await;
    let outcomes: Vec<Outcome> = runners.join_all().await.into_iter().flatten().collect();
    let (highest, _) = sampler.await.unwrap();

    let top = highest
        .get(&format!("env:{}", env.id))
        .copied()
        .unwrap_or(0);
    assert!(top <= LIMIT, "{top} tasks ran at once");
    let succeeded = outcomes
        .iter()
        .filter(|o| matches!(o, Outcome::Succeeded(_)))
        .count();
    assert_eq!(succeeded, 300, "every task ran once");
    assert_eq!(count_in_state(&ctx, env.id, "SUCCEEDED").await, 300);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_small_environment_is_not_starved_behind_a_big_one() {
    let cluster = Cluster::new().await;
    let ctx = cluster.with_sleeper().await;
    let (big, _) = environments::create(&ctx.db, "big").await.unwrap();
    let (small, _) = environments::create(&ctx.db, "small").await.unwrap();
    let new: Vec<NewTask> = (0..300).map(|n| sleeper_task(big.id, n)).collect();
    tasks::insert(&ctx.db, &new).await.unwrap();
    let new: Vec<NewTask> = (0..10).map(|n| sleeper_task(small.id, n)).collect();
    tasks::insert(&ctx.db, &new).await.unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let mut dispatchers = JoinSet::new();
    spawn_dispatcher(&mut dispatchers, cluster.context(), stop.clone());
    let mut runners = JoinSet::new();
    for _ in 0..2 {
        spawn_runner(&mut runners, cluster.context(), stop.clone());
    }
    let big_left = eventually(
        "the small environment's tasks to finish",
        Duration::from_secs(60),
        || async {
            let done = count_in_state(&ctx, small.id, "SUCCEEDED").await;
            let big_done = count_in_state(&ctx, big.id, "SUCCEEDED").await;
            (done == 10).then_some(300 - big_done)
        },
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    dispatchers.join_all().await;
    runners.join_all().await;
    // The small environment ran alongside the big one, not after its backlog.
    assert!(
        big_left > 200,
        "only {big_left} of the big environment's 300 tasks were left"
    );
}

#[tokio::test]
async fn a_failed_send_releases_the_tasks() {
    let db = fresh_database().await;
    // A queue that does not exist: SendMessageBatch fails.
    let cfg = config(
        &db,
        &[
            ("LASSO_TASK_TRANSPORT", "sqs".into()),
            (
                "LASSO_RUNNER_QUEUE_URL",
                format!("{}/123456789012/{}", aws_endpoint(), unique("absent")),
            ),
        ],
    );
    let ctx = Context::build(cfg, Some(aws_sdk_config())).unwrap();
    let (env, _) = environments::create(&ctx.db, "dispatch").await.unwrap();
    let new: Vec<NewTask> = (0..12).map(|n| sleeper_task(env.id, n)).collect();
    let ids = tasks::insert(&ctx.db, &new).await.unwrap();

    let report = dispatcher::dispatch_all(&ctx).await.unwrap();
    assert_eq!(
        report,
        dispatcher::DispatchReport {
            claimed: 12,
            redispatched: 0,
            sent: 0,
            released: 12,
            failed: 0,
            ready_left_behind: false,
        }
    );
    for id in ids {
        let task = tasks::get(&ctx.db, id).await.unwrap().unwrap();
        assert_eq!(task.state, TaskState::Created);
    }
    let dispatched_at: i64 =
        sqlx::query_scalar("SELECT count(*) FROM queue.tasks WHERE dispatched_at IS NOT NULL")
            .fetch_one(&ctx.db)
            .await
            .unwrap();
    assert_eq!(dispatched_at, 0);

    // Released tasks no longer count against the limit: a working queue takes them all.
    let queue_url = create_queue(30).await;
    let cfg = config(
        &db,
        &[
            ("LASSO_TASK_TRANSPORT", "sqs".into()),
            ("LASSO_RUNNER_QUEUE_URL", queue_url),
        ],
    );
    let ctx = Context::build(cfg, Some(aws_sdk_config())).unwrap();
    let report = dispatcher::dispatch_all(&ctx).await.unwrap();
    assert_eq!((report.claimed, report.sent, report.released), (12, 12, 0));
}

#[tokio::test]
async fn stuck_dispatched_tasks_are_sent_again_and_run_once() {
    let cluster = Cluster::new().await;
    let ctx = cluster.with_sleeper().await;
    let (env, _) = environments::create(&ctx.db, "stuck").await.unwrap();
    let new: Vec<NewTask> = (0..3).map(|n| sleeper_task(env.id, n)).collect();
    let ids = tasks::insert(&ctx.db, &new).await.unwrap();
    let (lost, late, too_old) = (ids[0], ids[1], ids[2]);
    let report = dispatcher::dispatch_all(&ctx).await.unwrap();
    assert_eq!(report.sent, 3);

    // Nothing is re-sent before its time.
    assert_eq!(
        dispatcher::redispatch_stuck(&ctx)
            .await
            .unwrap()
            .redispatched,
        0
    );

    // `lost`'s message disappears; `late`'s is still queued; `too_old` is past its
    // created-to-started timeout, which is expiry's business, not the dispatcher's.
    let deliveries = ctx
        .transport()
        .receive(10, Duration::from_secs(1), Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(deliveries.len(), 3);
    let body_of = |id: Uuid| json!({"task_id": id}).to_string();
    let lost_receipt: Vec<String> = deliveries
        .iter()
        .filter(|d| d.body == body_of(lost))
        .map(|d| d.receipt_handle.clone())
        .collect();
    ctx.transport().delete(&lost_receipt).await.unwrap();
    sqlx::query(
        "UPDATE queue.tasks SET dispatched_at = dispatched_at - interval '2 minutes',
             created_at = CASE WHEN id = $1 THEN created_at - interval '1 hour' ELSE created_at END",
    )
    .bind(too_old)
    .execute(&ctx.db)
    .await
    .unwrap();

    let report = dispatcher::dispatch_all(&ctx).await.unwrap();
    assert_eq!(report.redispatched, 2);
    assert_eq!(report.sent, 2);
    for (id, count) in [(lost, 2), (late, 2), (too_old, 1)] {
        let n: i32 = sqlx::query_scalar("SELECT dispatch_count FROM queue.tasks WHERE id = $1")
            .bind(id)
            .fetch_one(&ctx.db)
            .await
            .unwrap();
        assert_eq!(n, count, "dispatch count of {id}");
    }

    // `late` now has two messages; both are delivered at once and only one runs it.
    let mut bodies = vec![body_of(late)];
    let fresh = ctx
        .transport()
        .receive(10, Duration::from_secs(1), Duration::from_secs(30))
        .await
        .unwrap();
    bodies.extend(fresh.iter().map(|d| d.body.clone()));
    bodies.sort();
    let mut expected = vec![body_of(lost), body_of(late), body_of(late)];
    expected.sort();
    assert_eq!(bodies, expected);
    let outcomes: Vec<Outcome> =
        futures::future::join_all(bodies.iter().map(|b| runner::process_message(&ctx, b)))
            .await
            .into_iter()
            .map(|r| r.unwrap())
            .collect();
    let ran = |id: Uuid| {
        outcomes
            .iter()
            .filter(|o| **o == Outcome::Succeeded(id))
            .count()
    };
    assert_eq!((ran(lost), ran(late)), (1, 1));
    assert!(outcomes.contains(&Outcome::Skipped(late)));
    for id in [lost, late] {
        let task = tasks::get(&ctx.db, id).await.unwrap().unwrap();
        assert_eq!(task.state, TaskState::Succeeded);
    }
    assert_eq!(
        tasks::get(&ctx.db, too_old).await.unwrap().unwrap().state,
        TaskState::Dispatched
    );
}

#[tokio::test]
async fn batched_start_and_succeed_change_only_tasks_in_the_expected_state() {
    let db = fresh_database().await;
    let ctx = Context::build(config(&db, &[]), None).unwrap();
    let (env, _) = environments::create(&ctx.db, "batched").await.unwrap();
    let new: Vec<NewTask> = (0..6).map(|n| sleeper_task(env.id, n)).collect();
    let ids = tasks::insert(&ctx.db, &new).await.unwrap();
    let claimed = tasks::claim_for_dispatch(&ctx.db, 4, 100)
        .await
        .unwrap()
        .tasks;
    assert_eq!(claimed.len(), 4);
    let dispatched: Vec<Uuid> = claimed.iter().map(|t| t.id).collect();
    let created: Vec<Uuid> = ids
        .iter()
        .copied()
        .filter(|id| !dispatched.contains(id))
        .collect();

    // Another group's runner starts nothing.
    assert!(
        tasks::start_many(&ctx.db, &dispatched, "other")
            .await
            .unwrap()
            .is_empty()
    );
    // A batch with duplicates and CREATED tasks starts each DISPATCHED one once.
    let mut batch = dispatched.clone();
    batch.push(dispatched[0]);
    batch.extend(&created);
    let started = tasks::start_many(&ctx.db, &batch, "shared").await.unwrap();
    let mut started_ids: Vec<Uuid> = started.iter().map(|t| t.id).collect();
    started_ids.sort();
    let mut expected = dispatched.clone();
    expected.sort();
    assert_eq!(started_ids, expected);
    assert!(started.iter().all(|t| t.state == TaskState::Started));
    // A second delivery of the same batch starts nothing.
    assert!(
        tasks::start_many(&ctx.db, &batch, "shared")
            .await
            .unwrap()
            .is_empty()
    );

    // One started task is cancelled meanwhile: succeeding the batch leaves it cancelled.
    let cancelled = dispatched[1];
    sqlx::query("UPDATE queue.tasks SET state = 'CANCELLED' WHERE id = $1")
        .bind(cancelled)
        .execute(&ctx.db)
        .await
        .unwrap();
    let mut done: Vec<(Uuid, serde_json::Value)> = dispatched
        .iter()
        .map(|id| (*id, json!({"task": id.to_string()})))
        .collect();
    done.push((created[0], json!({"never": true})));
    let finished = tasks::succeed_many(&ctx.db, &done).await.unwrap();
    let mut finished_ids: Vec<Uuid> = finished.iter().map(|(id, _)| *id).collect();
    finished_ids.sort();
    let mut expected: Vec<Uuid> = dispatched
        .iter()
        .copied()
        .filter(|id| *id != cancelled)
        .collect();
    expected.sort();
    assert_eq!(finished_ids, expected);
    for (id, payload) in &finished {
        assert!(
            matches!(payload, Payload::Script { script_key, .. } if script_key == "sleeper.js"),
            "{id}: {payload:?}"
        );
        let task = tasks::get(&ctx.db, *id).await.unwrap().unwrap();
        assert_eq!(task.state, TaskState::Succeeded);
        assert_eq!(task.output, Some(json!({"task": id.to_string()})));
    }
    let states: Vec<TaskState> = futures::future::join_all([cancelled, created[0]].map(|id| {
        let db = ctx.db.clone();
        async move { tasks::get(&db, id).await.unwrap().unwrap().state }
    }))
    .await;
    assert_eq!(states, [TaskState::Cancelled, TaskState::Created]);
    // Succeeding again changes nothing.
    assert!(
        tasks::succeed_many(&ctx.db, &done)
            .await
            .unwrap()
            .is_empty()
    );
}
