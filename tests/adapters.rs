//! Each adapter round-trips against its real server (moto S3/SQS, Elasticsearch 7.9, Postgres)
//! and its local twin passes the same checks.

use lasso_services::EnvironmentId;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::{Duration as ChronoDuration, DurationRound, Utc};
use lasso_services::Error;
use lasso_services::adapters::log_sink::{OpenSearchLogSink, PostgresLogSink};
use lasso_services::adapters::script_store::{DirScriptStore, S3ScriptStore};
use lasso_services::adapters::transport::{LocalTransport, OutgoingMessage, SqsTransport};
use lasso_services::adapters::{LogSink, ScriptStore, TaskTransport};
use lasso_services::config::OpenSearchAuth;
use lasso_services::logs::{
    Level, LogBatch, Message, MessageKind, Operation, OperationKind, OperationQuery, OperationState,
};
use lasso_tests::*;
use uuid::Uuid;

async fn script_store_round_trip(store: &dyn ScriptStore) {
    store
        .put("bundles/a.js", Bytes::from_static(b"export default 1"))
        .await
        .unwrap();
    store
        .put("bundles/b.js", Bytes::from_static(b"export default 2"))
        .await
        .unwrap();
    store
        .put("other/c.js", Bytes::from_static(b"3"))
        .await
        .unwrap();
    // Overwrite wins.
    store
        .put("bundles/a.js", Bytes::from_static(b"export default 11"))
        .await
        .unwrap();

    assert_eq!(
        store.get("bundles/a.js").await.unwrap(),
        Bytes::from_static(b"export default 11")
    );
    assert_eq!(
        store.list("bundles/").await.unwrap(),
        vec!["bundles/a.js".to_string(), "bundles/b.js".to_string()]
    );
    assert_eq!(store.list("").await.unwrap().len(), 3);
    assert!(matches!(
        store.get("bundles/missing.js").await,
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        store.put("../escape.js", Bytes::new()).await,
        Err(Error::Invalid { .. })
    ));
}

#[tokio::test]
async fn s3_script_store_round_trips_on_moto() {
    let bucket = create_bucket().await;
    let store = S3ScriptStore::new(&aws_sdk_config(), bucket, "prefix/dir".into());
    script_store_round_trip(&store).await;
}

#[tokio::test]
async fn directory_script_store_round_trips() {
    let store = DirScriptStore::new(temp_dir("lasso-store"));
    script_store_round_trip(&store).await;
}

#[tokio::test]
async fn s3_script_store_reports_an_unreachable_bucket() {
    let store = S3ScriptStore::new(&aws_sdk_config(), unique("no-such-bucket"), String::new());
    let err = store.get("a.js").await.unwrap_err();
    assert!(
        matches!(err, Error::ScriptStore { .. } | Error::NotFound { .. }),
        "{err}"
    );
}

async fn transport_round_trip(transport: &dyn TaskTransport) {
    let messages: Vec<OutgoingMessage> = (0..25)
        .map(|i| OutgoingMessage {
            id: format!("m{i}"),
            body: format!("{{\"n\":{i}}}"),
        })
        .collect();
    // More than one SQS batch of 10.
    assert!(transport.send_batch(&messages).await.unwrap().is_empty());

    let mut received = Vec::new();
    while received.len() < 25 {
        let batch = transport
            .receive(10, Duration::from_secs(1), Duration::from_secs(30))
            .await
            .unwrap();
        assert!(!batch.is_empty(), "only {} of 25 received", received.len());
        assert!(batch.len() <= 10);
        received.extend(batch);
    }
    let mut bodies: Vec<&str> = received.iter().map(|d| d.body.as_str()).collect();
    bodies.sort();
    bodies.dedup();
    assert_eq!(
        bodies.len(),
        25,
        "every message exactly once while invisible"
    );
    assert!(received.iter().all(|d| d.receive_count == 1));

    // Invisible messages are not handed out again before their timeout.
    let none = transport
        .receive(10, Duration::from_millis(200), Duration::from_secs(30))
        .await
        .unwrap();
    assert!(none.is_empty());

    // Delete all but one; make that one visible again at once: it comes back, counted twice.
    let keep = received.pop().unwrap();
    let handles: Vec<String> = received.iter().map(|d| d.receipt_handle.clone()).collect();
    transport.delete(&handles).await.unwrap();
    transport
        .change_visibility(&keep.receipt_handle, Duration::ZERO)
        .await
        .unwrap();
    let again = transport
        .receive(10, Duration::from_secs(2), Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].body, keep.body);
    assert_eq!(again[0].receive_count, 2);

    // Not deleted: it returns after its (1 s) visibility timeout expires.
    let later = transport
        .receive(10, Duration::from_secs(5), Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(later.len(), 1);
    assert_eq!(later[0].receive_count, 3);
    transport
        .delete(&[later[0].receipt_handle.clone()])
        .await
        .unwrap();
    let empty = transport
        .receive(10, Duration::from_millis(1500), Duration::from_secs(30))
        .await
        .unwrap();
    assert!(empty.is_empty());
}

#[tokio::test]
async fn sqs_transport_round_trips_on_moto() {
    let queue = create_queue(30).await;
    transport_round_trip(&SqsTransport::new(&aws_sdk_config(), queue)).await;
}

#[tokio::test]
async fn local_transport_round_trips() {
    transport_round_trip(&LocalTransport::new()).await;
}

#[tokio::test]
async fn sqs_transport_reports_failed_sends_by_id() {
    let queue = format!("{}/000000000000/{}", aws_endpoint(), unique("missing"));
    let transport = SqsTransport::new(&aws_sdk_config(), queue);
    let failed = transport
        .send_batch(&[OutgoingMessage {
            id: "only".into(),
            body: "{}".into(),
        }])
        .await
        .unwrap();
    assert_eq!(failed, vec!["only".to_string()]);
}

fn operation(
    env: EnvironmentId,
    connection: &str,
    state: OperationState,
    minutes_ago: i64,
) -> Operation {
    Operation {
        id: Uuid::now_v7(),
        environment_id: env,
        kind: OperationKind::Sync,
        state,
        integration: Some("github".into()),
        connection: Some(connection.into()),
        script: Some("issues".into()),
        // Millisecond precision: what both stores keep.
        started_at: (Utc::now() - ChronoDuration::minutes(minutes_ago))
            .duration_trunc(ChronoDuration::milliseconds(1))
            .unwrap(),
        ended_at: None,
        error: None,
        meta: serde_json::json!({"n": minutes_ago}),
    }
}

fn message(op: &Operation, text: &str) -> Message {
    Message {
        id: Uuid::now_v7(),
        operation_id: op.id,
        environment_id: op.environment_id,
        created_at: Utc::now(),
        level: Level::Info,
        kind: MessageKind::Log,
        message: text.into(),
        meta: serde_json::json!({}),
    }
}

/// Writes a small history, then searches it every way the sink supports. `settle` waits until
/// the sink shows `expected` operations for environment 1 (Elasticsearch is near-real-time).
async fn log_sink_round_trip(sink: Arc<dyn LogSink>) {
    let env = EnvironmentId(1);
    let ops: Vec<Operation> = (0..7)
        .map(|i| {
            let state = if i % 2 == 0 {
                OperationState::Success
            } else {
                OperationState::Failed
            };
            operation(env, if i < 4 { "conn-a" } else { "conn-b" }, state, i)
        })
        .collect();
    let other_env = operation(EnvironmentId(2), "conn-a", OperationState::Success, 0);
    let mut messages: Vec<Message> = ops
        .iter()
        .map(|o| message(o, "fetched 10 issues"))
        .collect();
    messages.push(message(&ops[3], "rate limited by upstream, backing off"));
    messages.push(message(&other_env, "rate limited by upstream, backing off"));
    let mut all_ops = ops.clone();
    all_ops.push(other_env);
    sink.write(LogBatch {
        operations: all_ops,
        messages,
    })
    .await
    .unwrap();

    // An update of one operation (upsert by id).
    let mut finished = ops[0].clone();
    finished.state = OperationState::Failed;
    finished.error = Some("upstream returned 502 Bad Gateway".into());
    finished.ended_at = Some(
        Utc::now()
            .duration_trunc(ChronoDuration::milliseconds(1))
            .unwrap(),
    );
    sink.write(LogBatch {
        operations: vec![finished.clone()],
        messages: vec![],
    })
    .await
    .unwrap();

    let query = |f: &dyn Fn(&mut OperationQuery)| {
        let mut q = OperationQuery {
            environment_id: env,
            limit: 100,
            ..Default::default()
        };
        f(&mut q);
        q
    };
    // Elasticsearch makes writes searchable about a second later, index by index: wait until
    // both the operations and the messages indices show them.
    let sink2 = sink.clone();
    let watched = ops[3].id;
    eventually(
        "log writes to become searchable",
        Duration::from_secs(10),
        || {
            let sink = sink2.clone();
            let q = query(&|q| q.states = vec![OperationState::Failed]);
            async move {
                let page = sink.search_operations(&q).await.ok()?;
                let messages = sink.messages(env, watched).await.ok()?;
                (page.items.len() == 4 && messages.len() == 2).then_some(())
            }
        },
    )
    .await;

    let all = sink.search_operations(&query(&|_| {})).await.unwrap();
    assert_eq!(all.items.len(), 7, "environment 2 is not visible");
    assert!(all.next_cursor.is_none());
    assert!(
        all.items
            .windows(2)
            .all(|w| w[0].started_at >= w[1].started_at),
        "newest first"
    );
    assert_eq!(all.items[0], finished, "the update replaced the operation");

    let by_connection = sink
        .search_operations(&query(&|q| q.connection = Some("conn-b".into())))
        .await
        .unwrap();
    assert_eq!(by_connection.items.len(), 3);

    let by_text = sink
        .search_operations(&query(&|q| q.text = Some("rate limited".into())))
        .await
        .unwrap();
    assert_eq!(
        by_text.items.iter().map(|o| o.id).collect::<Vec<_>>(),
        vec![ops[3].id]
    );
    let by_error_text = sink
        .search_operations(&query(&|q| q.text = Some("Bad Gateway".into())))
        .await
        .unwrap();
    assert_eq!(by_error_text.items.len(), 1);
    // A word in one operation's error and another's message: both, each once, newest first.
    let by_either = sink
        .search_operations(&query(&|q| q.text = Some("upstream".into())))
        .await
        .unwrap();
    assert_eq!(
        by_either.items.iter().map(|o| o.id).collect::<Vec<_>>(),
        vec![ops[0].id, ops[3].id]
    );
    // Free text pages by cursor like any other search: each match once, in order.
    let mut matched = Vec::new();
    let mut cursor = None;
    loop {
        let page = sink
            .search_operations(&query(&|q| {
                q.text = Some("fetched".into());
                q.limit = 2;
                q.cursor = cursor.clone();
            }))
            .await
            .unwrap();
        matched.extend(page.items.iter().map(|o| o.id));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(
        matched,
        all.items.iter().map(|o| o.id).collect::<Vec<_>>(),
        "every operation has a message with the word"
    );

    let window = sink
        .search_operations(&query(&|q| {
            q.from = Some(Utc::now() - ChronoDuration::seconds(150));
            q.to = Some(Utc::now());
        }))
        .await
        .unwrap();
    assert_eq!(window.items.len(), 3, "started 0, 1 and 2 minutes ago");

    // Paging: 3 + 3 + 1, each operation exactly once.
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = sink
            .search_operations(&query(&|q| {
                q.limit = 3;
                q.cursor = cursor.clone();
            }))
            .await
            .unwrap();
        seen.extend(page.items.iter().map(|o| o.id));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(seen, all.items.iter().map(|o| o.id).collect::<Vec<_>>());

    let msgs = sink.messages(env, ops[3].id).await.unwrap();
    assert_eq!(msgs.len(), 2);
    assert_eq!(msgs[0].message, "fetched 10 issues");
    assert!(
        sink.messages(EnvironmentId(2), ops[3].id)
            .await
            .unwrap()
            .is_empty()
    );

    let bad_cursor = sink
        .search_operations(&query(&|q| q.cursor = Some("garbage".into())))
        .await;
    assert!(matches!(bad_cursor, Err(Error::Invalid { .. })));
}

#[tokio::test]
async fn opensearch_log_sink_round_trips_on_elasticsearch() {
    let prefix = unique("lasso-t").to_lowercase();
    let sink =
        OpenSearchLogSink::new(&elasticsearch_url(), OpenSearchAuth::None, prefix, None).unwrap();
    log_sink_round_trip(Arc::new(sink)).await;
}

#[tokio::test]
async fn postgres_log_sink_round_trips() {
    let db = fresh_database().await;
    log_sink_round_trip(Arc::new(PostgresLogSink::new(db.pool.clone()))).await;
}

#[tokio::test]
async fn opensearch_log_sink_reports_an_unreachable_server() {
    let sink = OpenSearchLogSink::new(
        "http://127.0.0.1:9",
        OpenSearchAuth::None,
        "lasso".into(),
        None,
    )
    .unwrap();
    let op = operation(EnvironmentId(1), "c", OperationState::Running, 0);
    let err = sink
        .write(LogBatch {
            operations: vec![op],
            messages: vec![],
        })
        .await
        .unwrap_err();
    assert!(matches!(err, Error::LogSink { .. }), "{err}");
}

/// The pool trusts connections used a moment ago, but one idle long enough to have been dropped
/// (as a frozen Lambda's are) is checked before use and replaced, so the query after it works.
#[tokio::test]
async fn a_pool_replaces_a_connection_the_server_dropped_while_idle() {
    let db = fresh_database().await;
    let pool =
        lasso_services::db::pool_for(&secrecy::SecretString::from(db.url.clone()), 1).unwrap();
    let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&pool)
        .await
        .unwrap();
    let killed: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
        .bind(pid)
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert!(killed);
    // Past the idle time after which the pool pings a connection before handing it out.
    tokio::time::sleep(Duration::from_secs(11)).await;
    let new_pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&pool)
        .await
        .expect("the dropped connection was replaced");
    assert_ne!(new_pid, pid);
}
