//! Operation logs: a sync run leaves an operation with its script logs, HTTP calls and result,
//! which the logs API finds by connection, state and free text — on Elasticsearch 7.9 and on
//! Postgres. Credentials never appear in a log entry, a process log or an error, and a log store
//! that is down never fails a run: the loss is counted.

use std::time::Duration;

use lasso_services::queue::{TaskKind, TaskState};
use lasso_tests::fakehub::{run, setup};
use lasso_tests::*;
use serde_json::{Value, json};

const SECRET: &str = "fk_live_secret";

fn opensearch(prefix: &str) -> Vec<(&'static str, String)> {
    vec![
        ("LASSO_LOG_SINK", "opensearch".into()),
        ("LASSO_OPENSEARCH_URL", elasticsearch_url()),
        ("LASSO_OPENSEARCH_INDEX_PREFIX", prefix.to_string()),
        ("LASSO_SCRIPT_TIMEOUT_SECS", "120".into()),
    ]
}

async fn operations(api: &Api, query: &str) -> Vec<Value> {
    let (status, body) = api.get(&format!("/logs/operations?{query}")).await;
    assert_eq!(status, 200, "{body}");
    body["data"].as_array().unwrap().clone()
}

/// Runs the issues sync and checks what the logs API shows of it.
async fn sync_run_is_logged(settings: Vec<(&'static str, String)>) {
    let s = setup(&settings).await;
    let task = run(&s, TaskKind::Sync, "issues", None).await;
    assert_eq!(task.state, TaskState::Succeeded, "{:?}", task.error);
    assert!(task.output.as_ref().unwrap().get("logs_dropped").is_none());

    // Elasticsearch shows writes about a second later.
    let found = eventually(
        "the operation to be searchable",
        Duration::from_secs(15),
        || async {
            let ops = operations(&s.api, "connection=acme&kind=sync").await;
            let messages = match ops.first() {
                Some(op) => {
                    s.api
                        .get(&format!("/logs/operations/{}/messages", op["id"].as_str()?))
                        .await
                        .1
                }
                None => return None,
            };
            let by_text = operations(&s.api, "q=synced%20a%20page").await;
            // A bulk write becomes visible in parts: wait for all of it (100 pages, 100 log lines,
            // one result).
            (ops.len() == 1 && messages["data"].as_array()?.len() == 201 && by_text.len() == 1)
                .then_some((ops, messages))
        },
    )
    .await;
    let (ops, messages) = found;
    let op = &ops[0];
    assert_eq!(op["state"], "success");
    assert_eq!(op["integration"], "fakehub");
    assert_eq!(op["script"], "issues");
    assert!(op["ended_at"].is_string());
    assert_eq!(operations(&s.api, "state=success").await.len(), 1);
    assert_eq!(operations(&s.api, "state=failed").await.len(), 0);
    assert_eq!(operations(&s.api, "connection=other").await.len(), 0);

    let messages = messages["data"].as_array().unwrap();
    let kinds = |k: &str| messages.iter().filter(|m| m["kind"] == k).count();
    assert_eq!(kinds("http"), 100, "one per page");
    assert_eq!(kinds("log"), 100, "one per nango.log");
    assert_eq!(kinds("result"), 1);
    let http = messages.iter().find(|m| m["kind"] == "http").unwrap();
    assert_eq!(http["meta"]["status"], 200);
    assert!(http["message"].as_str().unwrap().starts_with("GET /issues"));
    let result = messages.iter().find(|m| m["kind"] == "result").unwrap();
    assert_eq!(result["meta"]["results"]["Issue"]["added"], 10_000);

    let (status, body) = s.api.get("/logs/operations?state=sleeping").await;
    assert_eq!(
        (status, &body["error"]["errors"][0]["field"]),
        (400, &json!("state"))
    );
    s.workers.stop().await;
}

#[tokio::test]
async fn a_sync_run_is_logged_in_elasticsearch() {
    sync_run_is_logged(opensearch(&unique("lasso-logs").to_lowercase())).await;
}

#[tokio::test]
async fn a_sync_run_is_logged_in_postgres() {
    sync_run_is_logged(vec![("LASSO_SCRIPT_TIMEOUT_SECS", "120".into())]).await;
}

#[tokio::test]
async fn credentials_appear_in_no_log_and_no_error() {
    let process_logs = captured_logs();
    let s = setup(&opensearch(&unique("lasso-secret").to_lowercase())).await;

    // A careless action logs the key, gets it echoed back by the provider, and throws with it.
    let task = run(&s, TaskKind::Action, "leak", None).await;
    assert_eq!(task.state, TaskState::Failed);
    let error = task.error.unwrap().to_string();
    assert!(!error.contains(SECRET), "{error}");
    assert!(error.contains("[REDACTED]"), "{error}");
    // A sync and proxied calls through the api with the same connection.
    assert_eq!(
        run(&s, TaskKind::Sync, "tickets", None).await.state,
        TaskState::Succeeded
    );
    for endpoint in ["/tickets", "/echo-auth", "/no-such-endpoint"] {
        let response = s
            .api
            .http
            .get(format!("{}/proxy{endpoint}", s.api.base))
            .bearer_auth(&s.api.key)
            .header("Connection-Id", "acme")
            .header("Provider-Config-Key", "fakehub")
            .send()
            .await
            .unwrap();
        // The provider's own answer is passed through as it is; Lasso adds nothing of its own.
        if endpoint != "/echo-auth" {
            assert!(!response.text().await.unwrap().contains(SECRET));
        }
    }
    let (_, connection_error) = s
        .api
        .get("/connections/acme?provider_config_key=nope")
        .await;
    assert!(!connection_error.to_string().contains(SECRET));

    // Every log entry, once Elasticsearch shows them all.
    let dump = eventually(
        "the logs to be searchable",
        Duration::from_secs(15),
        || async {
            let ops = operations(&s.api, "limit=500").await;
            let mut dump = serde_json::to_string(&ops).unwrap();
            for op in &ops {
                let (_, messages) = s
                    .api
                    .get(&format!("/logs/operations/{}/messages", op["id"].as_str()?))
                    .await;
                dump.push_str(&messages.to_string());
            }
            (ops.len() >= 2
                && dump.contains("using key [REDACTED]")
                && dump.contains("giving up with [REDACTED]"))
            .then_some(dump)
        },
    )
    .await;
    assert!(!dump.contains(SECRET), "a secret reached the log store");
    assert!(
        dump.contains("GET /echo-auth -> 500"),
        "proxy calls are operations with their status"
    );
    assert!(
        !process_logs.text().contains(SECRET),
        "a secret reached the process log"
    );
    s.workers.stop().await;
}

#[tokio::test]
async fn a_log_store_that_is_down_never_fails_a_sync() {
    let mut settings = opensearch("lasso-down");
    // Nothing listens there: every write fails.
    settings[1].1 = "http://127.0.0.1:9".into();
    let s = setup(&settings).await;
    let task = run(&s, TaskKind::Sync, "tickets", None).await;
    assert_eq!(task.state, TaskState::Succeeded, "{:?}", task.error);
    let output = task.output.unwrap();
    assert_eq!(output["results"]["Ticket"]["added"], 1_000);
    assert!(output["logs_dropped"].as_u64().unwrap() > 4, "{output}");
    s.workers.stop().await;
}

#[tokio::test]
async fn deploys_are_logged_with_what_they_changed_or_why_they_failed() {
    let s = setup(&[]).await;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/fakehub-project");
    let mut functions = lasso_compile::compile(&dir).unwrap().functions;
    // The fixture is deployed already: deploying it without one function removes that one.
    let dropped = functions.pop().unwrap();
    let changed = format!(
        "deleted {} fakehub/{}",
        dropped.function_type(),
        dropped.name
    );
    let (status, body) = s
        .api
        .post("/scripts/deploy", json!({"functions": functions}))
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = s
        .api
        .post(
            "/scripts/deploy",
            json!({"integration": "nope", "functions": []}),
        )
        .await;
    assert_eq!(status, 404, "{body}");

    let ok = operations(&s.api, "kind=deploy&state=success").await;
    assert_eq!(ok.len(), 1, "{ok:?}");
    assert_eq!(ok[0]["meta"]["result"]["deleted"], 1);
    let (_, messages) = s
        .api
        .get(&format!(
            "/logs/operations/{}/messages",
            ok[0]["id"].as_str().unwrap()
        ))
        .await;
    let messages = messages["data"].as_array().unwrap();
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert_eq!(messages[0]["message"], changed);

    let failed = operations(&s.api, "kind=deploy&state=failed").await;
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0]["integration"], "nope");
    assert!(
        failed[0]["error"].as_str().unwrap().contains("nope"),
        "{failed:?}"
    );
    s.workers.stop().await;
}

/// A script may log thousands of long lines; an operation's messages come in bounded pages
/// (by count and by bytes) with a cursor to the rest, never all at once.
#[tokio::test]
async fn an_operations_messages_come_in_bounded_pages() {
    use lasso_services::logs::{Level, MessageKind, OperationKind, OperationLog, OperationState};
    let db = fresh_database().await;
    let ctx = local_context(&db).await;
    let (env, key) = lasso_services::environments::create(&ctx.db, "logs")
        .await
        .unwrap();
    let mut log = OperationLog::start(env.id, OperationKind::Sync, Some("x"), Some("c"), None);
    let line = "y".repeat(4096);
    for i in 0..3_000 {
        log.message(
            Level::Info,
            MessageKind::Log,
            &format!("{i:05} {line}"),
            json!({}),
        );
    }
    let id = log.id();
    ctx.logs
        .write(log.finish(OperationState::Success, None))
        .await
        .unwrap();
    let api = Api::new(&serve_api(ctx).await, &key);

    let mut seen = Vec::new();
    let mut cursor = String::new();
    let mut pages = 0;
    loop {
        let response = api
            .http
            .get(format!(
                "{}/logs/operations/{id}/messages?cursor={cursor}",
                api.base
            ))
            .bearer_auth(&api.key)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let text = response.text().await.unwrap();
        assert!(
            text.len() < 5_000_000,
            "a messages page of {} bytes",
            text.len()
        );
        let page: Value = serde_json::from_str(&text).unwrap();
        pages += 1;
        for m in page["data"].as_array().unwrap() {
            seen.push(m["message"].as_str().unwrap()[..5].to_string());
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = c.to_string(),
            None => break,
        }
        assert!(pages < 100, "the pages never end");
    }
    assert!(pages > 1, "3,000 messages of 4 KiB came in one page");
    let expected: Vec<String> = (0..3_000).map(|i| format!("{i:05}")).collect();
    assert_eq!(seen, expected, "every message once, oldest first");
}
