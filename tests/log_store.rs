//! A slow log store never holds up the API: against an OpenSearch that accepts connections and
//! never answers, a request that logs still completes — in `lasso dev` without waiting for the
//! store at all (a bounded buffer flushed in the background), on Lambda after a short, bounded
//! flush that counts what it left behind.
//!
//! "Does not wait" is shown structurally, not by timing: the request's answer arrives while
//! Lasso's connection to the store is still open, its write unanswered. A request that waited
//! for the write would only answer after giving up on it, which closes that connection.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use lasso_services::environments;
use lasso_tests::*;
use serde_json::json;
use tokio::io::AsyncReadExt;

/// A log store on loopback that accepts connections, reads what it is sent and never answers.
struct HungStore {
    url: String,
    /// Connections accepted that sent something.
    written: Arc<AtomicUsize>,
    /// Of those, connections the client has closed.
    closed: Arc<AtomicUsize>,
}

async fn hung_store() -> HungStore {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let written = Arc::new(AtomicUsize::new(0));
    let closed = Arc::new(AtomicUsize::new(0));
    let (w, c) = (written.clone(), closed.clone());
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let (w, c) = (w.clone(), c.clone());
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                let mut counted = false;
                loop {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(_) if !counted => {
                            counted = true;
                            w.fetch_add(1, Ordering::SeqCst);
                        }
                        Ok(_) => {}
                    }
                }
                if counted {
                    c.fetch_add(1, Ordering::SeqCst);
                }
            });
        }
    });
    HungStore {
        url,
        written,
        closed,
    }
}

/// Makes a request that writes an operation log (a deploy naming an unknown integration is
/// logged as a failed deploy) and returns once it is answered; a generous guard stops a hang.
async fn logged_request(extra: &[(&str, String)]) -> HungStore {
    let store = hung_store().await;
    let db = fresh_database().await;
    let mut settings = vec![
        ("LASSO_LOG_SINK", "opensearch".to_string()),
        ("LASSO_OPENSEARCH_URL", store.url.clone()),
        ("LASSO_OPENSEARCH_INDEX_PREFIX", unique("lasso-hung")),
    ];
    settings.extend(extra.iter().map(|(k, v)| (*k, v.clone())));
    let ctx = lasso_services::Context::build(config(&db, &settings), None).unwrap();
    let (_, key) = environments::create(&ctx.db, "hung").await.unwrap();
    let api = Api::new(&serve_api(ctx).await, &key);
    let (status, body) = tokio::time::timeout(
        Duration::from_secs(120),
        api.post(
            "/scripts/deploy",
            json!({"integration": "nope", "functions": []}),
        ),
    )
    .await
    .expect("the request waited on a log store that never answers");
    assert_eq!(status, 404, "{body}");
    store
}

/// The store got Lasso's write, and that connection is still open: the answer did not wait.
async fn assert_write_still_pending(store: &HungStore) {
    eventually(
        "Lasso to send its write to the log store",
        Duration::from_secs(30),
        || async { (store.written.load(Ordering::SeqCst) > 0).then_some(()) },
    )
    .await;
    assert!(
        store.closed.load(Ordering::SeqCst) < store.written.load(Ordering::SeqCst),
        "the request was answered only after Lasso gave up on the log store"
    );
}

#[tokio::test]
async fn a_hung_log_store_adds_no_wait_to_requests_in_dev() {
    let store = logged_request(&[]).await;
    assert_write_still_pending(&store).await;
}

#[tokio::test]
async fn on_lambda_a_hung_log_store_is_waited_for_briefly_and_what_is_left_is_counted() {
    let logs = captured_logs();
    let store = logged_request(&[("LASSO_LOG_FLUSH_MS", "200".to_string())]).await;
    assert_write_still_pending(&store).await;
    let text = logs.text();
    let line = text
        .lines()
        .find(|l| l.contains("not flushed before returning"))
        .unwrap_or_else(|| panic!("no count of what was not flushed: {text}"));
    let count: usize = line
        .split("unflushed=")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count in {line}"));
    assert!(count > 0, "{line}");
}
