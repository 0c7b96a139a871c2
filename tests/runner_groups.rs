//! Runner groups: a runner of group A, connected as its group's database user, cannot read or
//! change anything of an environment in group B — not its connections, records or tasks — even
//! when a crafted task asks it to. Each group's tasks travel on its own queue (two queues on moto
//! SQS, both inspected) to its own runner, which refuses a message put on the wrong queue; and
//! `lasso dev`'s loops run a queue and a runner per group, and refill a full environment as its
//! runs end.

use lasso_services::{ConnectionRowId, EnvironmentId};
use std::collections::BTreeSet;
use std::time::Duration;

use bytes::Bytes;
use lasso_cli::event_source;
use lasso_cli::workers::{Intervals, Workers};
use lasso_runner::run::{self as runner, Outcome};
use lasso_services::adapters::transport::{Delivery, OutgoingMessage};
use lasso_services::connections;
use lasso_services::queue::{NewTask, Payload, TaskKind, TaskMessage, TaskState, tasks};
use lasso_services::records::{self, ListQuery, Scope};
use lasso_services::{Context, Error, actions, environments, runner_groups};
use lasso_tests::*;
use serde_json::{Value, json};
use uuid::Uuid;

struct Group {
    name: String,
    env_id: EnvironmentId,
    connection: ConnectionRowId,
}

/// A context for a runner of `group`: the same database, as the group's runner user.
async fn runner_context(db: &TestDb, group: &str) -> Context {
    Context::build(
        config(
            &runner_database(db, group).await,
            &[("LASSO_RUNNER_GROUP", group.to_string())],
        ),
        None,
    )
    .unwrap()
}

async fn group(admin: &Context, api: &Api, name: &str) -> Group {
    let group = unique(name).replace('-', "_");
    let (env, key) = environments::create(&admin.db, name).await.unwrap();
    runner_groups::assign(&admin.db, env.id, &group)
        .await
        .unwrap();
    let api = Api::new(&api.base, &key);
    api.post(
        "/integrations",
        json!({"provider": "openai", "unique_key": "openai"}),
    )
    .await;
    let (status, body) = api
        .post(
            "/connections",
            json!({"provider_config_key": "openai", "connection_id": "shared-name",
                   "credentials": {"type": "API_KEY", "apiKey": format!("sk-{name}-secret")}}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let connection = ConnectionRowId(body["id"].as_i64().unwrap());
    records::save(
        &admin.db,
        &Scope::new(connection, "Doc", None),
        &[json!({"id": "1", "owner": name})],
        None,
    )
    .await
    .unwrap();
    Group {
        name: group,
        env_id: env.id,
        connection,
    }
}

#[tokio::test]
async fn a_runner_cannot_reach_another_groups_data() {
    let db = fresh_database().await;
    let admin = local_context(&db).await;
    let api = Api::new(&serve_api(admin.clone()).await, "");
    let a = group(&admin, &api, "alpha").await;
    let b = group(&admin, &api, "beta").await;
    let runner_a = runner_context(&db, &a.name).await;

    // Its own group's data is there...
    let own = connections::get(
        &runner_a.db,
        &runner_a.cipher,
        a.env_id,
        "openai",
        "shared-name",
    )
    .await
    .unwrap();
    assert_eq!(own.id, a.connection);
    let own_records = records::list(
        &runner_a.db,
        &Scope::new(a.connection, "Doc", None),
        &ListQuery {
            limit: 10,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(own_records.records.len(), 1);

    // ...the other group's is not, asked for directly by its ids.
    let theirs = connections::get(
        &runner_a.db,
        &runner_a.cipher,
        b.env_id,
        "openai",
        "shared-name",
    )
    .await;
    assert!(matches!(theirs, Err(Error::NotFound { .. })), "{theirs:?}");
    let their_records = records::list(
        &runner_a.db,
        &Scope::new(b.connection, "Doc", None),
        &ListQuery {
            limit: 10,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert!(their_records.records.is_empty());
    // Writing into the other group's connection is refused by the database.
    let write = records::save(
        &runner_a.db,
        &Scope::new(b.connection, "Doc", None),
        &[json!({"id": "planted"})],
        None,
    )
    .await;
    assert!(write.is_err(), "{write:?}");
    assert_eq!(
        records::count(&admin.db, &Scope::new(b.connection, "Doc", None))
            .await
            .unwrap(),
        1
    );
    // Secret keys are out of reach altogether.
    let keys = sqlx::query("SELECT * FROM environment_keys")
        .execute(&runner_a.db)
        .await;
    assert!(keys.is_err(), "runner users have no grant on secret keys");

    // A task of group B handed to group A's runner: the runner cannot even see it, and refuses.
    let theirs = tasks::insert(
        &admin.db,
        &[NewTask::new(
            b.env_id,
            TaskKind::Script,
            "x",
            Payload::script("x.js", Value::Null),
        )],
    )
    .await
    .unwrap()[0];
    lasso_services::dispatcher::dispatch_all(&admin)
        .await
        .unwrap();
    let body = serde_json::to_string(&TaskMessage { task_id: theirs }).unwrap();
    assert_eq!(
        runner::process_message(&runner_a, &body).await.unwrap(),
        Outcome::Refused(theirs)
    );
    assert_eq!(
        tasks::get(&admin.db, theirs).await.unwrap().unwrap().state,
        TaskState::Dispatched,
        "left for its own group"
    );

    // A crafted task of group A that names group B's connection (and, in its payload's JSON,
    // B's environment, which a payload cannot carry): the connection is not found.
    let crafted_payload: Payload = serde_json::from_value(
        json!({"integration": "openai", "connection_id": "shared-name", "function": "anything",
               "environment_id": b.env_id}),
    )
    .unwrap();
    let crafted = tasks::insert(
        &admin.db,
        &[NewTask::new(
            a.env_id,
            TaskKind::Action,
            "x",
            crafted_payload,
        )],
    )
    .await
    .unwrap()[0];
    lasso_services::dispatcher::dispatch_all(&admin)
        .await
        .unwrap();
    let body = serde_json::to_string(&TaskMessage { task_id: crafted }).unwrap();
    runner::process_message(&runner_a, &body).await.unwrap();
    let task = tasks::get(&admin.db, crafted).await.unwrap().unwrap();
    assert_eq!(task.state, TaskState::Failed);
    assert!(!task.error.unwrap().to_string().contains("beta-secret"));
}

#[tokio::test]
async fn a_runner_takes_script_locks_and_reads_schedules_of_its_own_group_only() {
    let db = fresh_database().await;
    let admin = local_context(&db).await;
    let api = Api::new(&serve_api(admin.clone()).await, "");
    let a = group(&admin, &api, "alpha").await;
    let b = group(&admin, &api, "beta").await;
    let runner_a = runner_context(&db, &a.name).await;
    let (task, theirs) = (Uuid::now_v7(), Uuid::now_v7());
    assert!(
        lasso_services::script_locks::try_acquire(&runner_a.db, a.env_id, "k", task, 60_000)
            .await
            .unwrap()
    );
    // Another group's environment: the database refuses the lock row.
    let planted =
        lasso_services::script_locks::try_acquire(&runner_a.db, b.env_id, "k", task, 60_000).await;
    assert!(planted.is_err(), "{planted:?}");
    // Its locks are out of sight: releasing one does nothing.
    assert!(
        lasso_services::script_locks::try_acquire(&admin.db, b.env_id, "k", theirs, 60_000)
            .await
            .unwrap()
    );
    assert!(
        !lasso_services::script_locks::release(&runner_a.db, b.env_id, "k", theirs)
            .await
            .unwrap()
    );
    // Schedules (for nango.triggerSync / startSync) are readable, the group's own only.
    let (seen,): (i64,) = sqlx::query_as("SELECT count(*) FROM queue.schedules")
        .fetch_one(&runner_a.db)
        .await
        .unwrap();
    assert_eq!(seen, 0);
}

#[tokio::test]
async fn a_runner_records_retries_of_its_own_groups_actions_only() {
    let db = fresh_database().await;
    let admin = local_context(&db).await;
    let api = Api::new(&serve_api(admin.clone()).await, "");
    let a = group(&admin, &api, "alpha").await;
    let b = group(&admin, &api, "beta").await;
    let runner_a = runner_context(&db, &a.name).await;

    // An action of group A with a retry left fails in A's runner: its next attempt is recorded.
    let mut action = NewTask::new(
        a.env_id,
        TaskKind::Action,
        "x",
        function_payload("openai", "c", "x", None),
    );
    action.max_attempts = 2;
    let id = tasks::insert(&admin.db, &[action]).await.unwrap()[0];
    lasso_services::dispatcher::dispatch_all(&admin)
        .await
        .unwrap();
    let started = tasks::start(&runner_a.db, id, &a.name)
        .await
        .unwrap()
        .unwrap();
    actions::fail(
        &runner_a,
        &started,
        &json!({"kind": "exception", "message": "boom"}),
    )
    .await
    .unwrap();
    let next = tasks::latest_attempt(&admin.db, a.env_id, id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((next.attempt, next.state), (2, TaskState::Created));

    // It cannot plant a task in group B's environment.
    let planted = tasks::insert(
        &runner_a.db,
        &[NewTask::new(
            b.env_id,
            TaskKind::Action,
            "x",
            function_payload("openai", "c", "x", None),
        )],
    )
    .await;
    assert!(planted.is_err(), "{planted:?}");
}

const MARKER: &str = "export default async function (nango, input) { return { ran: input.who }; }";

fn script_task(env_id: EnvironmentId, who: &str) -> NewTask {
    NewTask::new(
        env_id,
        TaskKind::Script,
        "marker",
        Payload::script("bundles/marker.js", json!({"who": who})),
    )
}

/// Receives everything on `queue` (it was all sent before), leaving it invisible for a while.
async fn drain(ctx: &Context, group: &str, expected: usize) -> Vec<Delivery> {
    let queue = ctx.queues.for_group(group).unwrap();
    let mut got = Vec::new();
    for _ in 0..20 {
        got.extend(
            queue
                .receive(10, Duration::from_millis(200), Duration::from_secs(30))
                .await
                .unwrap(),
        );
        if got.len() >= expected {
            break;
        }
    }
    // Nothing more is waiting.
    let more = queue
        .receive(10, Duration::from_millis(500), Duration::from_secs(30))
        .await
        .unwrap();
    got.extend(more);
    got
}

fn task_ids(deliveries: &[Delivery]) -> BTreeSet<Uuid> {
    deliveries
        .iter()
        .map(|d| {
            serde_json::from_str::<TaskMessage>(&d.body)
                .unwrap()
                .task_id
        })
        .collect()
}

/// Invokes the runner function's handler with these deliveries as Lambda's event source mapping
/// would; returns the message ids it reported as failed.
async fn invoke_runner(runner: &Context, deliveries: &[Delivery]) -> Vec<String> {
    let event =
        serde_json::from_value(event_source::sqs_event_json(deliveries, "arn:test")).unwrap();
    lasso_runner::handle(runner, event)
        .await
        .batch_item_failures
        .into_iter()
        .map(|f| f.item_identifier)
        .collect()
}

#[tokio::test]
async fn each_groups_tasks_reach_only_its_own_queue_and_runner_on_moto() {
    let db = fresh_database().await;
    let bucket = create_bucket().await;
    let (shared_queue, acme_queue) = (create_queue(30).await, create_queue(30).await);
    let settings = |group: &str| {
        config(
            &db,
            &[
                ("LASSO_SCRIPT_STORE", format!("s3://{bucket}/scripts")),
                ("LASSO_TASK_TRANSPORT", "sqs".into()),
                (
                    "LASSO_RUNNER_QUEUES",
                    json!({"shared": shared_queue, "acme": acme_queue}).to_string(),
                ),
                ("LASSO_RUNNER_GROUP", group.into()),
            ],
        )
    };
    // The api / scheduler / dispatcher side, and a runner per group.
    let control = Context::build(settings("shared"), Some(aws_sdk_config())).unwrap();
    let shared_runner = Context::build(settings("shared"), Some(aws_sdk_config())).unwrap();
    let acme_runner = Context::build(settings("acme"), Some(aws_sdk_config())).unwrap();
    control
        .scripts
        .put("bundles/marker.js", Bytes::from_static(MARKER.as_bytes()))
        .await
        .unwrap();
    let (shared_env, _) = environments::create(&control.db, "shared-customer")
        .await
        .unwrap();
    let (acme_env, _) = environments::create(&control.db, "acme-customer")
        .await
        .unwrap();
    runner_groups::assign(&control.db, acme_env.id, "acme")
        .await
        .unwrap();

    let mut new = Vec::new();
    for i in 0..3 {
        new.push(script_task(shared_env.id, &format!("shared-{i}")));
        new.push(script_task(acme_env.id, &format!("acme-{i}")));
    }
    let ids = tasks::insert(&control.db, &new).await.unwrap();
    let (shared_ids, acme_ids): (BTreeSet<Uuid>, BTreeSet<Uuid>) = (
        ids.iter().step_by(2).copied().collect(),
        ids.iter().skip(1).step_by(2).copied().collect(),
    );
    let report = lasso_services::dispatcher::dispatch_all(&control)
        .await
        .unwrap();
    assert_eq!(report.sent, 6, "{report:?}");

    // Both queues inspected: each holds exactly its own group's tasks.
    let on_shared = drain(&control, "shared", 3).await;
    let on_acme = drain(&control, "acme", 3).await;
    assert_eq!(task_ids(&on_shared), shared_ids);
    assert_eq!(task_ids(&on_acme), acme_ids);
    assert_eq!((on_shared.len(), on_acme.len()), (3, 3));

    // Each runner runs its own group's tasks.
    assert!(invoke_runner(&shared_runner, &on_shared).await.is_empty());
    assert!(invoke_runner(&acme_runner, &on_acme).await.is_empty());
    for id in ids {
        let task = tasks::get(&control.db, id).await.unwrap().unwrap();
        assert_eq!(task.state, TaskState::Succeeded, "{task:?}");
        let who = task.output.unwrap()["ran"].as_str().unwrap().to_string();
        let group = if acme_ids.contains(&id) {
            "acme"
        } else {
            "shared"
        };
        assert!(who.starts_with(group), "{who} ran as a {group} task");
    }

    // A shared-group task's message put by hand on acme's queue: acme's runner refuses it
    // unrun and reports the message failed (so SQS moves it to the dead-letter queue).
    let stray = tasks::insert(&control.db, &[script_task(shared_env.id, "stray")])
        .await
        .unwrap()[0];
    lasso_services::dispatcher::dispatch_all(&control)
        .await
        .unwrap();
    let body = serde_json::to_string(&TaskMessage { task_id: stray }).unwrap();
    let failed = acme_runner
        .queues
        .for_group("acme")
        .unwrap()
        .send_batch(&[OutgoingMessage {
            id: "by-hand".into(),
            body,
        }])
        .await
        .unwrap();
    assert!(failed.is_empty());
    let misrouted = drain(&acme_runner, "acme", 1).await;
    assert_eq!(task_ids(&misrouted), BTreeSet::from([stray]));
    let reported = invoke_runner(&acme_runner, &misrouted).await;
    assert_eq!(reported, vec![misrouted[0].message_id.clone()]);
    let task = tasks::get(&control.db, stray).await.unwrap().unwrap();
    assert_eq!(task.state, TaskState::Dispatched, "refused without running");
    assert!(task.output.is_none() && task.started_at.is_none());

    // Its own group's runner still runs it, from its own queue.
    let own = drain(&shared_runner, "shared", 1).await;
    assert_eq!(task_ids(&own), BTreeSet::from([stray]));
    assert!(invoke_runner(&shared_runner, &own).await.is_empty());
    let task = tasks::get(&control.db, stray).await.unwrap().unwrap();
    assert_eq!(task.output.unwrap()["ran"], "stray");

    // An environment moved to a group this deployment has no queue for: its task fails with
    // an error naming the group instead of waiting forever.
    let (lost_env, _) = environments::create(&control.db, "lost").await.unwrap();
    runner_groups::assign(&control.db, lost_env.id, "ghost")
        .await
        .unwrap();
    let lost = tasks::insert(&control.db, &[script_task(lost_env.id, "lost")])
        .await
        .unwrap()[0];
    let report = lasso_services::dispatcher::dispatch_all(&control)
        .await
        .unwrap();
    assert_eq!((report.failed, report.sent), (1, 0), "{report:?}");
    let task = tasks::get(&control.db, lost).await.unwrap().unwrap();
    assert_eq!(task.state, TaskState::Failed);
    assert_eq!(
        task.error.as_ref().unwrap()["kind"],
        "runner_group_unavailable"
    );
    assert!(
        task.error.unwrap()["message"]
            .as_str()
            .unwrap()
            .contains("`ghost`")
    );
}

/// Waits for task `id` to end, and checks it succeeded.
async fn succeeds(ctx: &Context, id: Uuid, what: &str) {
    let task = task_ended(&ctx.db, id, what, Duration::from_secs(30)).await;
    assert_eq!(task.state, TaskState::Succeeded, "{task:?}");
}

#[tokio::test]
async fn lasso_dev_runs_a_queue_and_a_runner_per_group() {
    let db = fresh_database().await;
    let ctx = local_context(&db).await;
    ctx.scripts
        .put("bundles/marker.js", Bytes::from_static(MARKER.as_bytes()))
        .await
        .unwrap();
    let (plain, _) = environments::create(&ctx.db, "plain").await.unwrap();
    let (dedicated, _) = environments::create(&ctx.db, "dedicated").await.unwrap();
    runner_groups::assign(&ctx.db, dedicated.id, "dedicated")
        .await
        .unwrap();
    let workers = Workers::start(ctx.clone());
    let ids = tasks::insert(
        &ctx.db,
        &[
            script_task(plain.id, "plain"),
            script_task(dedicated.id, "dedicated"),
        ],
    )
    .await
    .unwrap();
    for id in ids {
        succeeds(&ctx, id, "the task to finish").await;
    }
    // A group that appears while running gets its runner too.
    let (late, _) = environments::create(&ctx.db, "late").await.unwrap();
    runner_groups::assign(&ctx.db, late.id, "late")
        .await
        .unwrap();
    let id = tasks::insert(&ctx.db, &[script_task(late.id, "late")])
        .await
        .unwrap()[0];
    succeeds(&ctx, id, "the late group's task").await;
    workers.stop().await;
}

#[tokio::test]
async fn lasso_devs_dispatcher_refills_a_full_environment_as_runs_end() {
    let db = fresh_database().await;
    let ctx = Context::build(
        config(&db, &[("LASSO_ENVIRONMENT_CONCURRENCY", "1".to_string())]),
        None,
    )
    .unwrap();
    ctx.scripts
        .put("bundles/marker.js", Bytes::from_static(MARKER.as_bytes()))
        .await
        .unwrap();
    let (env, _) = environments::create(&ctx.db, "busy").await.unwrap();
    let ids = tasks::insert(
        &ctx.db,
        &[
            script_task(env.id, "first"),
            script_task(env.id, "second"),
            script_task(env.id, "third"),
        ],
    )
    .await
    .unwrap();
    // Neither loop looks again on its own within the test: the environment's one slot is
    // refilled only because a finished run wakes the dispatcher.
    let never = Duration::from_secs(3600);
    let workers = Workers::start_with(
        ctx.clone(),
        Intervals {
            scheduler: never,
            dispatcher_idle: never,
        },
    );
    for id in ids {
        succeeds(&ctx, id, "the task to finish").await;
    }
    workers.stop().await;
}
