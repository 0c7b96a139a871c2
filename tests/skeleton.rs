//! The walking skeleton: a task row is claimed by the dispatcher, sent through the task
//! transport, received by the runner's SQS handler, which loads the script from the script
//! store, runs it in the sandbox and records the outcome — on moto (S3 + SQS) and on the local
//! adapters inside `lasso dev`'s loops.

use lasso_services::EnvironmentId;
use std::time::Duration;

use bytes::Bytes;
use lasso_cli::event_source::{self, Mapping};
use lasso_cli::workers::Workers;
use lasso_services::queue::{NewTask, Payload, TaskKind, TaskState, tasks};
use lasso_services::{Context, environments};
use lasso_tests::*;
use serde_json::json;
use uuid::Uuid;

const DOUBLER: &str = "export default async function (nango, input) {
    return { doubled: input.n * 2, greeting: `hello ${input.name}` };
}";

const THROWER: &str = "export default async function () {
    throw new Error('the upstream API said no');
}";

async fn enqueue(
    ctx: &Context,
    env_id: EnvironmentId,
    script_key: &str,
    input: serde_json::Value,
) -> Uuid {
    tasks::insert(
        &ctx.db,
        &[NewTask::new(
            env_id,
            TaskKind::Script,
            "skeleton",
            Payload::script(script_key, input),
        )],
    )
    .await
    .unwrap()[0]
}

async fn wait_until_done(ctx: &Context, id: Uuid) -> tasks::Task {
    task_ended(&ctx.db, id, "the task to finish", Duration::from_secs(20)).await
}

#[tokio::test]
async fn skeleton_on_moto_s3_and_sqs() {
    let db = fresh_database().await;
    let ctx = aws_context(&db).await;
    let (env, _) = environments::create(&ctx.db, "skeleton").await.unwrap();
    ctx.scripts
        .put("bundles/doubler.js", Bytes::from_static(DOUBLER.as_bytes()))
        .await
        .unwrap();
    ctx.scripts
        .put("bundles/thrower.js", Bytes::from_static(THROWER.as_bytes()))
        .await
        .unwrap();
    let ok = enqueue(
        &ctx,
        env.id,
        "bundles/doubler.js",
        json!({"n": 21, "name": "lasso"}),
    )
    .await;
    let bad = enqueue(&ctx, env.id, "bundles/thrower.js", json!(null)).await;

    // The scheduler's tick hands ready work to the dispatcher, which sends it over SQS.
    let report = lasso_scheduler::handle(&ctx).await.unwrap();
    assert_eq!(report.dispatched.sent, 2);
    for id in [ok, bad] {
        assert_eq!(
            tasks::get(&ctx.db, id).await.unwrap().unwrap().state,
            TaskState::Dispatched
        );
    }

    // Lambda's event source mapping: receive from SQS, invoke the runner with an SqsEvent.
    let mapping = Mapping::default();
    let mut received = 0;
    while received < 2 {
        let n = event_source::pump_once(ctx.transport().as_ref(), &mapping, |event| async {
            let response = lasso_runner::handle(&ctx, event).await;
            assert!(response.batch_item_failures.is_empty());
            Ok(response)
        })
        .await
        .unwrap();
        assert!(n > 0, "messages arrive on the queue");
        received += n;
    }

    let done = tasks::get(&ctx.db, ok).await.unwrap().unwrap();
    assert_eq!(done.state, TaskState::Succeeded);
    assert_eq!(
        done.output,
        Some(json!({"doubled": 42, "greeting": "hello lasso"}))
    );
    let failed = tasks::get(&ctx.db, bad).await.unwrap().unwrap();
    assert_eq!(failed.state, TaskState::Failed);
    let error = failed.error.unwrap();
    assert_eq!(error["message"], "Error: the upstream API said no");
    assert!(error["stack"].as_str().unwrap().contains("script.js:2"));

    // The queue is drained: every message was deleted after processing.
    let left = ctx
        .transport()
        .receive(10, Duration::from_secs(1), Duration::from_secs(30))
        .await
        .unwrap();
    assert!(left.is_empty());
}

#[tokio::test]
async fn skeleton_in_lasso_dev_with_local_adapters() {
    let db = fresh_database().await;
    let ctx = local_context(&db).await;
    let (env, _) = environments::create(&ctx.db, "dev").await.unwrap();
    ctx.scripts
        .put("bundles/doubler.js", Bytes::from_static(DOUBLER.as_bytes()))
        .await
        .unwrap();
    ctx.scripts
        .put("bundles/thrower.js", Bytes::from_static(THROWER.as_bytes()))
        .await
        .unwrap();
    let workers = Workers::start(ctx.clone());

    let ok = enqueue(
        &ctx,
        env.id,
        "bundles/doubler.js",
        json!({"n": 5, "name": "dev"}),
    )
    .await;
    let bad = enqueue(&ctx, env.id, "bundles/thrower.js", json!(null)).await;
    let missing = enqueue(&ctx, env.id, "bundles/nope.js", json!(null)).await;

    let done = wait_until_done(&ctx, ok).await;
    assert_eq!(done.state, TaskState::Succeeded);
    assert_eq!(
        done.output,
        Some(json!({"doubled": 10, "greeting": "hello dev"}))
    );

    let failed = wait_until_done(&ctx, bad).await;
    assert_eq!(failed.state, TaskState::Failed);
    assert_eq!(
        failed.error.unwrap()["message"],
        "Error: the upstream API said no"
    );

    let not_found = wait_until_done(&ctx, missing).await;
    assert_eq!(not_found.state, TaskState::Failed);
    assert_eq!(not_found.error.unwrap()["kind"], "script_not_found");

    workers.stop().await;
}
