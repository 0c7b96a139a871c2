//! Token refresh: an expiring token is refreshed before it is returned, once however many
//! callers ask at the same moment (across processes), failures back off and are reported by
//! webhook.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::routing::post;
use axum::{Form, Json, Router};
use chrono::Utc;
use lasso_services::{Context, environments};
use lasso_tests::*;
use serde_json::{Value, json};

#[derive(Default)]
struct TokenServer {
    calls: AtomicUsize,
    /// Answer 400 invalid_grant instead of a token.
    refuse: std::sync::atomic::AtomicBool,
    last_form: Mutex<Vec<(String, String)>>,
}

async fn token(
    State(server): State<Arc<TokenServer>>,
    Form(form): Form<Vec<(String, String)>>,
) -> (axum::http::StatusCode, Json<Value>) {
    let n = server.calls.fetch_add(1, Ordering::SeqCst) + 1;
    *server.last_form.lock().unwrap() = form;
    // Slow enough that concurrent callers pile up behind the first refresh.
    tokio::time::sleep(Duration::from_millis(300)).await;
    if server.refuse.load(Ordering::SeqCst) {
        return (
            axum::http::StatusCode::BAD_REQUEST,
            Json(json!({"error": "invalid_grant", "error_description": "refresh token revoked"})),
        );
    }
    (
        axum::http::StatusCode::OK,
        Json(
            json!({"access_token": format!("new-{n}"), "refresh_token": format!("r-{n}"),
                    "expires_in": 3600, "token_type": "bearer"}),
        ),
    )
}

struct Setup {
    db: TestDb,
    server: Arc<TokenServer>,
    providers: std::path::PathBuf,
    key: String,
}

async fn setup(expires_in_minutes: i64) -> Setup {
    let server = Arc::new(TokenServer::default());
    let base = serve(
        Router::new()
            .route("/token", post(token))
            .with_state(server.clone()),
    )
    .await;
    let providers = providers_file(&format!(
        "fake-oauth:\n  display_name: Fake OAuth\n  auth_mode: OAUTH2\n  docs: https://example.com\n  \
         authorization_url: {base}/authorize\n  token_url: {base}/token\n  proxy:\n    base_url: {base}\n"
    ));
    let db = fresh_database().await;
    let ctx = context(&db, &providers);
    let (_, key) = environments::create(&ctx.db, "refresh").await.unwrap();
    let api = Api::new(&serve_api(ctx).await, &key);
    api.post(
        "/integrations",
        json!({"provider": "fake-oauth", "unique_key": "fake",
               "credentials": {"type": "OAUTH2", "client_id": "app-id", "client_secret": "app-secret"}}),
    )
    .await;
    let expires_at = Utc::now() + chrono::Duration::minutes(expires_in_minutes);
    let (status, body) = api
        .post(
            "/connections",
            json!({"provider_config_key": "fake", "connection_id": "c1",
                   "credentials": {"type": "OAUTH2", "access_token": "old", "refresh_token": "r-0",
                                   "expires_at": expires_at}}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    Setup {
        db,
        server,
        providers,
        key,
    }
}

fn context(db: &TestDb, providers: &std::path::Path) -> Context {
    Context::build(
        config(
            db,
            &[("LASSO_PROVIDERS_FILE", providers.display().to_string())],
        ),
        None,
    )
    .unwrap()
}

const GET: &str = "/connections/c1?provider_config_key=fake";

#[tokio::test]
async fn fifty_concurrent_reads_of_an_expiring_token_refresh_once() {
    let s = setup(5).await;
    // Two api processes (separate pools), as on Lambda.
    let first = Api::new(&serve_api(context(&s.db, &s.providers)).await, &s.key);
    let second = Api::new(&serve_api(context(&s.db, &s.providers)).await, &s.key);
    let calls = (0..50).map(|i| {
        let api = if i % 2 == 0 {
            first.clone()
        } else {
            second.clone()
        };
        async move { api.get(GET).await }
    });
    let answers = futures::future::join_all(calls).await;
    assert_eq!(
        s.server.calls.load(Ordering::SeqCst),
        1,
        "exactly one token request"
    );
    for (status, body) in answers {
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["credentials"]["access_token"], "new-1");
    }
    let form = s.server.last_form.lock().unwrap().clone();
    let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    assert_eq!(get("grant_type"), Some("refresh_token"));
    assert_eq!(get("refresh_token"), Some("r-0"));
    assert_eq!(get("client_id"), Some("app-id"));
    assert_eq!(get("client_secret"), Some("app-secret"));

    // The refreshed token is stored: no further call while it is fresh.
    let (_, again) = first.get(&format!("{GET}&refresh_token=true")).await;
    assert_eq!(again["credentials"]["refresh_token"], "r-1");
    assert_eq!(s.server.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_fresh_token_is_not_refreshed_unless_forced() {
    let s = setup(120).await;
    let api = Api::new(&serve_api(context(&s.db, &s.providers)).await, &s.key);
    assert_eq!(api.get(GET).await.1["credentials"]["access_token"], "old");
    assert_eq!(s.server.calls.load(Ordering::SeqCst), 0);
    let (status, body) = api.get(&format!("{GET}&force_refresh=true")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["credentials"]["access_token"], "new-1");
    assert_eq!(s.server.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn failed_refreshes_back_off_mark_the_connection_and_send_a_webhook() {
    let s = setup(5).await;
    let received: Arc<Mutex<Vec<Value>>> = Arc::default();
    let sink = received.clone();
    let receiver = serve(Router::new().route(
        "/hook",
        post(move |Json(body): Json<Value>| {
            let sink = sink.clone();
            async move {
                sink.lock().unwrap().push(body);
                "ok"
            }
        }),
    ))
    .await;
    let api = Api::new(&serve_api(context(&s.db, &s.providers)).await, &s.key);
    assert_eq!(
        api.patch(
            "/environment",
            json!({"webhook_url": format!("{receiver}/hook")})
        )
        .await
        .0,
        200
    );
    s.server.refuse.store(true, Ordering::SeqCst);

    let (status, body) = api.get(GET).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "provider_token_error");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("invalid_grant")
    );
    assert!(
        !body.to_string().contains("r-0"),
        "no refresh token in errors"
    );
    assert_eq!(s.server.calls.load(Ordering::SeqCst), 1);

    // Within the backoff the provider is not asked again; the still-valid token is returned.
    let (status, body) = api.get(GET).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["credentials"]["access_token"], "old");
    assert_eq!(
        body["errors"][0]["type"], "auth",
        "the connection is marked"
    );
    assert_eq!(s.server.calls.load(Ordering::SeqCst), 1);

    let hooks = eventually("the refresh webhook", Duration::from_secs(5), || {
        let r = received.clone();
        async move {
            let hooks = r.lock().unwrap().clone();
            (!hooks.is_empty()).then_some(hooks)
        }
    })
    .await;
    assert_eq!(hooks[0]["type"], "auth");
    assert_eq!(hooks[0]["operation"], "refresh");
    assert_eq!(hooks[0]["success"], false);
    assert_eq!(hooks[0]["connectionId"], "c1");
    assert_eq!(hooks[0]["providerConfigKey"], "fake");

    // Once the backoff has passed the provider is asked again, and success clears the mark.
    sqlx::query("UPDATE connections SET last_refresh_failure_at = now() - interval '1 hour'")
        .execute(&s.db.pool)
        .await
        .unwrap();
    s.server.refuse.store(false, Ordering::SeqCst);
    let (status, body) = api.get(GET).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["credentials"]["access_token"], "new-2");
    assert_eq!(body["errors"], json!([]));
}

#[tokio::test]
async fn after_repeated_failures_only_a_forced_refresh_asks_the_provider() {
    let s = setup(5).await;
    let api = Api::new(&serve_api(context(&s.db, &s.providers)).await, &s.key);
    s.server.refuse.store(true, Ordering::SeqCst);
    for attempt in 1..=5 {
        // Skip the backoff between attempts.
        sqlx::query("UPDATE connections SET last_refresh_failure_at = now() - interval '2 hours'")
            .execute(&s.db.pool)
            .await
            .unwrap();
        assert_eq!(api.get(GET).await.0, 400, "attempt {attempt}");
    }
    assert_eq!(s.server.calls.load(Ordering::SeqCst), 5);
    sqlx::query("UPDATE connections SET last_refresh_failure_at = now() - interval '2 hours'")
        .execute(&s.db.pool)
        .await
        .unwrap();
    // Given up: the still-valid token is served, the provider is left alone.
    let (status, body) = api.get(GET).await;
    assert_eq!(
        (status, &body["credentials"]["access_token"]),
        (200, &json!("old"))
    );
    assert_eq!(s.server.calls.load(Ordering::SeqCst), 5);
    s.server.refuse.store(false, Ordering::SeqCst);
    let (status, body) = api.get(&format!("{GET}&force_refresh=true")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(s.server.calls.load(Ordering::SeqCst), 6);
}
