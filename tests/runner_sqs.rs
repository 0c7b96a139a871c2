//! The runner's SQS handler on a real `SqsEvent` payload (the shape Lambda delivers): it reports
//! `batchItemFailures` only for messages it could not process, never for a script that failed.

use aws_lambda_events::event::sqs::SqsEvent;
use bytes::Bytes;
use lasso_services::queue::{NewTask, Payload, TaskKind, TaskState, tasks};
use lasso_services::{dispatcher, environments};
use lasso_tests::*;
use serde_json::{Value, json};

fn record(message_id: &str, body: &str) -> serde_json::Value {
    json!({
        "messageId": message_id,
        "receiptHandle": "AQEBwJnKyrHigUMZj6rYigCgxlaS3SLy0a...",
        "body": body,
        "attributes": {
            "ApproximateReceiveCount": "1",
            "SentTimestamp": "1545082649183",
            "SenderId": "AIDAIENQZJOLO23YVJ4VO",
            "ApproximateFirstReceiveTimestamp": "1545082649185"
        },
        "messageAttributes": {},
        "md5OfBody": "e4e68fb7bd0e697a0ae8f1bb342846b3",
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-2:123456789012:my-queue",
        "awsRegion": "us-east-2"
    })
}

#[tokio::test]
async fn reports_only_unprocessable_messages() {
    let db = fresh_database().await;
    let ctx = local_context(&db).await;
    let (env, _) = environments::create(&ctx.db, "runner").await.unwrap();
    ctx.scripts
        .put("ok.js", Bytes::from_static(b"export default () => 'fine'"))
        .await
        .unwrap();
    ctx.scripts
        .put(
            "fails.js",
            Bytes::from_static(b"export default () => { throw new Error('x') }"),
        )
        .await
        .unwrap();
    let ids = tasks::insert(
        &ctx.db,
        &[
            NewTask::new(
                env.id,
                TaskKind::Script,
                "ok",
                Payload::script("ok.js", Value::Null),
            ),
            NewTask::new(
                env.id,
                TaskKind::Script,
                "fails",
                Payload::script("fails.js", Value::Null),
            ),
        ],
    )
    .await
    .unwrap();
    dispatcher::dispatch_all(&ctx).await.unwrap();

    let event: SqsEvent = serde_json::from_value(json!({"Records": [
        record("m-ok", &json!({"task_id": ids[0]}).to_string()),
        record("m-script-fails", &json!({"task_id": ids[1]}).to_string()),
        record("m-garbage", "this is not a task message"),
        // A duplicate delivery of a task that already ran is a no-op, not a failure.
        record("m-duplicate", &json!({"task_id": ids[0]}).to_string()),
    ]}))
    .unwrap();
    let response = lasso_runner::handle(&ctx, event).await;
    let failed: Vec<&str> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    assert_eq!(failed, vec!["m-garbage"]);

    // The Lambda response shape.
    let wire = serde_json::to_value(&response).unwrap();
    assert_eq!(
        wire,
        json!({"batchItemFailures": [{"itemIdentifier": "m-garbage"}]})
    );

    let ok = tasks::get(&ctx.db, ids[0]).await.unwrap().unwrap();
    assert_eq!(ok.state, TaskState::Succeeded);
    assert_eq!(ok.output, Some(json!("fine")));
    let failed = tasks::get(&ctx.db, ids[1]).await.unwrap().unwrap();
    assert_eq!(failed.state, TaskState::Failed);
}

#[tokio::test]
async fn an_unreachable_script_store_fails_the_message_and_gives_the_task_back() {
    let db = fresh_database().await;
    // A bucket that does not exist: the store errors (not a missing-script outcome).
    let cfg = config(
        &db,
        &[(
            "LASSO_SCRIPT_STORE",
            format!("s3://{}", unique("absent-bucket")),
        )],
    );
    let ctx = lasso_services::Context::build(cfg, Some(aws_sdk_config())).unwrap();
    let (env, _) = environments::create(&ctx.db, "runner").await.unwrap();
    let id = tasks::insert(
        &ctx.db,
        &[NewTask::new(
            env.id,
            TaskKind::Script,
            "x",
            Payload::script("x.js", Value::Null),
        )],
    )
    .await
    .unwrap()[0];
    dispatcher::dispatch_all(&ctx).await.unwrap();
    let event: SqsEvent = serde_json::from_value(json!({"Records": [
        record("m1", &json!({"task_id": id}).to_string()),
    ]}))
    .unwrap();
    let response = lasso_runner::handle(&ctx, event).await;
    assert_eq!(response.batch_item_failures.len(), 1);
    let task = tasks::get(&ctx.db, id).await.unwrap().unwrap();
    assert_eq!(
        task.state,
        TaskState::Dispatched,
        "ready for the redelivery"
    );
}
