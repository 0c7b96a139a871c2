//! Outgoing webhooks: environment settings, the documented signature, and retries through the
//! outbox until the receiver accepts or the attempts run out.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use hmac::{Hmac, Mac};
use lasso_services::{environments, webhooks};
use lasso_tests::*;
use serde_json::json;
use sha2::Sha256;

#[derive(Default)]
struct Receiver {
    /// Status to answer, consumed front to back; 200 once empty.
    script: Mutex<Vec<u16>>,
    got: Mutex<Vec<(String, String)>>,
}

async fn receiver() -> (String, Arc<Receiver>) {
    let state = Arc::new(Receiver::default());
    let s = state.clone();
    let url = serve(Router::new().route(
        "/hook",
        post(move |headers: HeaderMap, body: Bytes| {
            let s = s.clone();
            async move {
                let signature = headers
                    .get("x-nango-hmac-sha256")
                    .map(|v| v.to_str().unwrap().to_string())
                    .unwrap_or_default();
                s.got
                    .lock()
                    .unwrap()
                    .push((signature, String::from_utf8(body.to_vec()).unwrap()));
                let mut script = s.script.lock().unwrap();
                let status = if script.is_empty() {
                    200
                } else {
                    script.remove(0)
                };
                StatusCode::from_u16(status).unwrap()
            }
        }),
    ))
    .await;
    (format!("{url}/hook"), state)
}

fn hmac_hex(secret: &str, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

#[tokio::test]
async fn webhooks_are_signed_and_retried_until_accepted() {
    let db = fresh_database().await;
    let ctx = local_context(&db).await;
    let (env, key) = environments::create(&ctx.db, "hooks").await.unwrap();
    let api = Api::new(&serve_api(ctx.clone()).await, &key);
    let (url, rx) = receiver().await;

    // No URL configured: nothing is queued.
    assert_eq!(
        webhooks::emit(&ctx, env.id, None, &json!({"n": 0}))
            .await
            .unwrap(),
        None
    );

    let (status, settings) = api.patch("/environment", json!({"webhook_url": url})).await;
    assert_eq!(status, 200, "{settings}");
    let secret = settings["webhook_signing_secret"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(secret.starts_with("whsec_"));
    // The secret survives a URL change.
    let (_, again) = api.patch("/environment", json!({"webhook_url": url})).await;
    assert_eq!(again["webhook_signing_secret"], secret.as_str());
    assert_eq!(api.get("/environment").await.1["webhook_url"], url.as_str());
    let (status, bad) = api
        .patch("/environment", json!({"webhook_url": "ftp://x"}))
        .await;
    assert_eq!(status, 400, "{bad}");

    // The receiver fails twice, then accepts.
    *rx.script.lock().unwrap() = vec![500, 503];
    let event = json!({"type": "auth", "connectionId": "c1", "success": true});
    let id = webhooks::emit(&ctx, env.id, None, &event)
        .await
        .unwrap()
        .unwrap();
    let make_due = || async {
        sqlx::query(
            "UPDATE webhooks.deliveries SET next_attempt_at = now() WHERE state = 'PENDING'",
        )
        .execute(&db.pool)
        .await
        .unwrap();
    };
    make_due().await;
    let report = webhooks::deliver_due(&ctx, 10).await.unwrap();
    assert_eq!((report.attempted, report.delivered), (1, 0));
    // Not due yet: the backoff holds it back.
    assert_eq!(webhooks::deliver_due(&ctx, 10).await.unwrap().attempted, 0);
    make_due().await;
    let report = webhooks::deliver_due(&ctx, 10).await.unwrap();
    assert_eq!((report.attempted, report.delivered), (1, 1));

    let got = rx.got.lock().unwrap().clone();
    assert_eq!(got.len(), 3);
    // The same bytes every time, signed with the documented scheme.
    assert!(got.iter().all(|(_, body)| body == &got[0].1));
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&got[0].1).unwrap(),
        event
    );
    for (signature, body) in &got {
        assert_eq!(signature, &hmac_hex(&secret, body));
    }
    let (state, attempts): (String, i32) =
        sqlx::query_as("SELECT state::text, attempts FROM webhooks.deliveries WHERE id = $1")
            .bind(id)
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!((state.as_str(), attempts), ("DELIVERED", 3));
}

#[tokio::test]
async fn a_delivery_that_keeps_failing_ends_failed() {
    let db = fresh_database().await;
    let ctx = local_context(&db).await;
    let (env, _) = environments::create(&ctx.db, "hooks").await.unwrap();
    let (url, rx) = receiver().await;
    environments::set_webhook_url(&ctx.db, &ctx.cipher, env.id, Some(&url))
        .await
        .unwrap();
    *rx.script.lock().unwrap() = vec![500; 20];
    let id = webhooks::emit(&ctx, env.id, None, &json!({"x": 1}))
        .await
        .unwrap()
        .unwrap();
    for _ in 0..10 {
        sqlx::query(
            "UPDATE webhooks.deliveries SET next_attempt_at = now() WHERE state = 'PENDING'",
        )
        .execute(&db.pool)
        .await
        .unwrap();
        webhooks::deliver_due(&ctx, 10).await.unwrap();
    }
    let (state, attempts): (String, i32) =
        sqlx::query_as("SELECT state::text, attempts FROM webhooks.deliveries WHERE id = $1")
            .bind(id)
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!((state.as_str(), attempts), ("FAILED", 8));
    assert_eq!(rx.got.lock().unwrap().len(), 8);
}

#[tokio::test]
async fn a_connection_url_override_wins() {
    let db = fresh_database().await;
    let ctx = local_context(&db).await;
    let (env, _) = environments::create(&ctx.db, "hooks").await.unwrap();
    let (default_url, default_rx) = receiver().await;
    let (override_url, override_rx) = receiver().await;
    environments::set_webhook_url(&ctx.db, &ctx.cipher, env.id, Some(&default_url))
        .await
        .unwrap();
    webhooks::emit(&ctx, env.id, Some(&override_url), &json!({"x": 1}))
        .await
        .unwrap();
    assert_eq!(override_rx.got.lock().unwrap().len(), 1);
    assert!(default_rx.got.lock().unwrap().is_empty());
}
