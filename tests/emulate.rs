//! `lasso emulate` with the four functions served by `cargo lambda watch` against moto S3/SQS:
//! everything goes through the api function; the scheduler, invoked on its schedule, turns a
//! deployed 30 s sync into tasks on SQS; the event source mapping bridges the queue to runner
//! invocations and deletes only what the runner did not report as failed; records, sync status
//! and signed webhooks follow.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use bytes::Bytes;
use lasso_services::queue::{NewTask, Payload, TaskKind, TaskState, tasks};
use lasso_services::records::{self, Scope};
use lasso_services::scripts::DeployRequest;
use lasso_services::{ConnectionRowId, Context, environments};
use lasso_tests::contacts::{Upstream, list_contacts};
use lasso_tests::lambda::{Emulator, start_watch, until};
use lasso_tests::receiver::Receiver;
use lasso_tests::*;
use serde_json::json;

const GREETER: &str = "export default async function (nango, input) {
    return { greeting: `hello ${input.who}` };
}";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_runs_on_its_own_under_cargo_lambda_watch_and_lasso_emulate() {
    let upstream = Arc::new(Upstream::default());
    for n in 1..=30 {
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
    ctx.scripts
        .put("greeter.js", Bytes::from_static(GREETER.as_bytes()))
        .await
        .unwrap();
    let (env, key) = environments::create(&ctx.db, "emulated").await.unwrap();
    let watch = start_watch(&settings).await;
    let hooks = Receiver::start().await;

    // Everything through the api function, as a user would: webhook URL, integration, the
    // deployed sync, then the connection (which gets the schedule).
    let api = Api::new(&format!("{}/lambda-url/api", watch.endpoint), &key);
    let (status, environment) = api
        .patch("/environment", json!({"webhook_url": hooks.url}))
        .await;
    assert_eq!(status, 200, "{environment}\n{}", watch.log());
    let secret = environment["webhook_signing_secret"].as_str().unwrap();
    let (status, body) = api
        .post(
            "/integrations",
            json!({"provider": "fakehub", "unique_key": "fakehub"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let project =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/schedules-project");
    let functions: Vec<_> = lasso_compile::compile(&project)
        .unwrap()
        .functions
        .into_iter()
        .filter(|f| f.name == "contacts")
        .collect();
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
    let (status, body) = api
        .post(
            "/connections",
            json!({"provider_config_key": "fakehub", "connection_id": "acme",
                   "credentials": {"type": "API_KEY", "apiKey": "fk_secret"}}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let connection = ConnectionRowId(body["id"].as_i64().unwrap());

    let emulator = Emulator::start(&config, &watch);

    // A plain script task takes the same path.
    let greeting = tasks::insert(
        &ctx.db,
        &[NewTask::new(
            env.id,
            TaskKind::Script,
            "greeter",
            Payload::script("greeter.js", json!({"who": "lambda"})),
        )],
    )
    .await
    .unwrap()[0];
    let task = until(&watch, "the script task", || async {
        let task = tasks::get(&ctx.db, greeting).await.unwrap()?;
        task.state.is_terminal().then_some(task)
    })
    .await;
    assert_eq!(
        task.state,
        TaskState::Succeeded,
        "{task:?}\n{}",
        watch.log()
    );
    assert_eq!(task.output.unwrap()["greeting"], "hello lambda");

    // The sync runs by itself: records, status with counts, a signed webhook.
    let scope = Scope::new(connection, "Contact", None);
    until(&watch, "the first run's records", || async {
        (records::count(&ctx.db, &scope).await.unwrap() == 30).then_some(())
    })
    .await;
    let hook = hooks.wait_for(1, Duration::from_secs(60)).await.remove(0);
    assert!(hook.signed_with(secret));
    let body = hook.json();
    assert_eq!(body["type"], "sync");
    assert_eq!(body["syncName"], "contacts");
    assert_eq!(
        body["responseResults"],
        json!({"added": 30, "updated": 0, "deleted": 0})
    );
    let (status, sync) = api
        .get("/sync/status?provider_config_key=fakehub&syncs=contacts&connection_id=acme")
        .await;
    assert_eq!(status, 200, "{sync}");
    let st = &sync["syncs"][0];
    assert_eq!(st["status"], "SUCCESS", "{sync}");
    assert_eq!(st["recordCount"], json!({"Contact": 30}));
    assert_eq!(
        st["latestResult"],
        json!({"Contact": {"added": 30, "updated": 0, "deleted": 0}})
    );

    // Thirty seconds on, the schedule runs again and picks up the change.
    upstream.put("c31", "Contact 31");
    let hook = hooks.wait_for(2, Duration::from_secs(120)).await.remove(1);
    assert!(hook.signed_with(secret));
    assert_eq!(
        hook.json()["responseResults"],
        json!({"added": 1, "updated": 0, "deleted": 0})
    );
    assert_eq!(records::count(&ctx.db, &scope).await.unwrap(), 31);

    // The event source mapping deleted what the runner handled.
    let leftover = ctx
        .transport()
        .receive(10, Duration::from_secs(1), Duration::from_secs(60))
        .await
        .unwrap();
    assert!(leftover.is_empty(), "{leftover:?}");
    // The functions ran in their own processes, as on Lambda.
    let log = watch.log();
    assert!(log.contains("scheduler tick"), "{log}");
    assert!(log.contains("task succeeded"), "{log}");

    emulator.stop().await;
}
