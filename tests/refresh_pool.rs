//! Token refresh waits without holding a pooled connection (issue 14, item 7). Five parallel
//! proxy calls on an expiring token, on a pool of five connections: one caller refreshes (and
//! holds one connection while the provider answers), the other four wait for it. Other work in
//! the same process must still get a connection meanwhile, instead of timing out behind
//! waiters that each hold one.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::extract::State;
use axum::routing::{get, post};
use chrono::Utc;
use lasso_tests::*;
use serde_json::json;
use tokio::sync::Semaphore;

/// A provider whose token endpoint answers only once the test lets it.
struct Provider {
    calls: AtomicUsize,
    release: Semaphore,
}

#[tokio::test]
async fn waiting_for_a_refresh_leaves_the_pool_to_other_work() {
    let provider = Arc::new(Provider {
        calls: AtomicUsize::new(0),
        release: Semaphore::new(0),
    });
    let base = serve(
        Router::new()
            .route(
                "/token",
                post(|State(p): State<Arc<Provider>>| async move {
                    p.calls.fetch_add(1, Ordering::SeqCst);
                    let _permit = p.release.acquire().await.unwrap();
                    axum::Json(json!({"access_token": "new", "refresh_token": "r-1",
                                      "expires_in": 3600}))
                }),
            )
            .route("/data", get(|| async { "ok" }))
            .with_state(provider.clone()),
    )
    .await;
    let TestApp { api, .. } = TestApp::builder()
        .providers(&format!(
            "slow-oauth:\n  display_name: Slow OAuth\n  auth_mode: OAUTH2\n  \
             authorization_url: {base}/authorize\n  token_url: {base}/token\n  proxy:\n    base_url: {base}\n"
        ))
        .setting("LASSO_DB_MAX_CONNECTIONS", "5")
        .environment("pool")
        .start()
        .await;
    let (status, body) = api
        .post(
            "/integrations",
            json!({"provider": "slow-oauth", "unique_key": "slow",
                   "credentials": {"type": "OAUTH2", "client_id": "id", "client_secret": "s"}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = api
        .post(
            "/connections",
            json!({"provider_config_key": "slow", "connection_id": "c1",
                   "credentials": {"type": "OAUTH2", "access_token": "old", "refresh_token": "r-0",
                                   "expires_at": Utc::now() + chrono::Duration::minutes(5)}}),
        )
        .await;
    assert_eq!(status, 201, "{body}");

    let proxy_calls: Vec<_> = (0..5)
        .map(|_| {
            let api = api.clone();
            tokio::spawn(async move {
                let res = api
                    .http
                    .get(format!("{}/proxy/data", api.base))
                    .bearer_auth(&api.key)
                    .header("Connection-Id", "c1")
                    .header("Provider-Config-Key", "slow")
                    .send()
                    .await
                    .unwrap();
                res.status().as_u16()
            })
        })
        .collect();
    // The refresher is at the provider; the other four callers are waiting for it.
    eventually(
        "the refresh to reach the provider",
        std::time::Duration::from_secs(10),
        || async { (provider.calls.load(Ordering::SeqCst) == 1).then_some(()) },
    )
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;

    // Other work of the same process: it needs a pooled connection.
    let (status, body) = api.get("/connections").await;
    assert_eq!(
        status, 200,
        "other work could not get a database connection while callers waited for the refresh: {body}"
    );

    provider.release.add_permits(10);
    for call in proxy_calls {
        assert_eq!(call.await.unwrap(), 200);
    }
    assert_eq!(provider.calls.load(Ordering::SeqCst), 1, "refreshed once");
}
