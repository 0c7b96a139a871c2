//! API-key and basic-auth connections over HTTP: credentials checked with the provider's
//! verification request (a fake provider API here), connection config checked against the
//! catalog, and every kind of bad input refused with the contract's error, storing nothing.

use std::sync::{Arc, Mutex};

use axum::extract::Path;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use lasso_services::connections::{self, Credentials};
use lasso_tests::auth::WebhookSink;
use lasso_tests::*;
use serde_json::{Value, json};

/// A provider API whose `GET /:region/me` accepts `x-api-key: good-key` or the basic
/// credentials `good-user:good-pass`, and records what it was sent.
struct FakeApi {
    url: String,
    seen: Arc<Mutex<Vec<(String, HeaderMap)>>>,
}

async fn fake_api() -> FakeApi {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let app = axum::Router::new().route(
        "/{region}/me",
        get(move |Path(region): Path<String>, headers: HeaderMap| {
            let log = log.clone();
            async move {
                log.lock().unwrap().push((region, headers.clone()));
                let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
                // base64("good-user:good-pass")
                let good = header("x-api-key") == Some("good-key")
                    || header("authorization") == Some("Basic Z29vZC11c2VyOmdvb2QtcGFzcw==");
                if good {
                    StatusCode::OK
                } else {
                    StatusCode::UNAUTHORIZED
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    FakeApi { url, seen }
}

fn catalog(api: &str) -> String {
    format!(
        r#"
fake-key:
    display_name: Fake API
    auth_mode: API_KEY
    proxy:
        base_url: {api}/${{connectionConfig.region}}
        headers:
            x-api-key: ${{apiKey}}
        verification:
            endpoints: [/me]
    connection_config:
        region:
            type: string
            title: Region
            enum: [eu, us]
fake-key-unchecked:
    display_name: Fake API without a verification request
    auth_mode: API_KEY
    proxy:
        base_url: {api}
fake-basic:
    display_name: Fake basic API
    auth_mode: BASIC
    proxy:
        base_url: {api}/us
        verification:
            endpoints: [/me]
"#
    )
}

struct Setup {
    app: TestApp,
    /// The fake provider API.
    fake: FakeApi,
    hooks: WebhookSink,
}

setup_derefs_to_app!(Setup);

async fn setup() -> Setup {
    let fake = fake_api().await;
    let hooks = WebhookSink::start().await;
    let app = TestApp::builder()
        .providers(&catalog(&fake.url))
        .integration("fake", "fake-key", "")
        .integration("fake-unchecked", "fake-key-unchecked", "")
        .integration("fb", "fake-basic", "")
        .webhook_url(&hooks.url)
        .start()
        .await;
    Setup { app, fake, hooks }
}

impl Setup {
    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let res = reqwest::Client::new()
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.key)
            .json(&body)
            .send()
            .await
            .unwrap();
        (res.status().as_u16(), res.json().await.unwrap())
    }

    async fn credentials(&self, key: &str, id: &str) -> Option<Credentials> {
        connections::get(&self.ctx.db, &self.ctx.cipher, self.env.id, key, id)
            .await
            .ok()
            .map(|c| c.credentials)
    }

    async fn connection_count(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM connections")
            .fetch_one(&self.ctx.db)
            .await
            .unwrap()
    }
}

fn api_key(c: Option<Credentials>) -> String {
    match c {
        Some(Credentials::ApiKey { api_key }) => api_key,
        other => panic!("expected API_KEY credentials, got {other:?}"),
    }
}

#[tokio::test]
async fn api_key_connections_are_checked_with_the_provider() {
    let s = setup().await;
    let (status, body) = s
        .post(
            "/api-auth/api-key/fake?connection_id=k1&params[region]=eu",
            json!({"apiKey": "good-key"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"providerConfigKey": "fake", "connectionId": "k1"})
    );
    assert_eq!(api_key(s.credentials("fake", "k1").await), "good-key");
    let stored = connections::get(&s.ctx.db, &s.ctx.cipher, s.env.id, "fake", "k1")
        .await
        .unwrap();
    assert_eq!(stored.connection_config["region"], "eu");
    // The verification call went to the interpolated base URL with the catalog's header.
    {
        let seen = s.fake.seen.lock().unwrap();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].0, "eu");
        assert_eq!(seen[0].1["x-api-key"], "good-key");
    }
    let hook = eventually(
        "the auth webhook",
        std::time::Duration::from_secs(5),
        || async { s.hooks.bodies().into_iter().next() },
    )
    .await;
    assert_eq!(hook["authMode"], "API_KEY");
    assert_eq!(hook["operation"], "creation");
    assert_eq!(hook["connectionId"], "k1");

    // A key the provider refuses: 400, nothing stored, and the existing connection keeps its
    // key when someone tries to replace it with a bad one.
    for id in ["k2", "k1"] {
        let (status, body) = s
            .post(
                &format!("/api-auth/api-key/fake?connection_id={id}&params[region]=eu"),
                json!({"apiKey": "stolen-and-wrong"}),
            )
            .await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["error"]["code"], "connection_test_failed");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("Fake API did not accept the credentials: GET /me answered 401"),
            "{message}"
        );
        assert!(
            !body.to_string().contains("stolen-and-wrong"),
            "no secret echoed"
        );
    }
    assert!(s.credentials("fake", "k2").await.is_none());
    assert_eq!(api_key(s.credentials("fake", "k1").await), "good-key");

    // Connection config is checked against the provider's schema before any call.
    let calls = s.fake.seen.lock().unwrap().len();
    let (status, body) = s
        .post(
            "/api-auth/api-key/fake?connection_id=k3",
            json!({"apiKey": "good-key"}),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(
        body["error"]["errors"][0]["field"], "params[region]",
        "{body}"
    );
    let (status, body) = s
        .post(
            "/api-auth/api-key/fake?connection_id=k3&params[region]=apac",
            json!({"apiKey": "good-key"}),
        )
        .await;
    assert_eq!(status, 400);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("eu, us"),
        "{body}"
    );
    assert_eq!(s.fake.seen.lock().unwrap().len(), calls);

    // A provider without a verification request takes the key as it is; a new connection id
    // is made when none is given.
    let (status, body) = s
        .post(
            "/api-auth/api-key/fake-unchecked",
            json!({"apiKey": "anything"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let id = body["connectionId"].as_str().unwrap();
    assert!(uuid::Uuid::parse_str(id).is_ok(), "{id}");
    assert_eq!(s.connection_count().await, 2);
}

#[tokio::test]
async fn basic_connections_are_checked_with_the_provider() {
    let s = setup().await;
    let (status, body) = s
        .post(
            "/api-auth/basic/fb?connection_id=b1",
            json!({"username": "good-user", "password": "good-pass"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"providerConfigKey": "fb", "connectionId": "b1"})
    );
    match s.credentials("fb", "b1").await {
        Some(Credentials::Basic { username, password }) => {
            assert_eq!(
                (username.as_str(), password.as_str()),
                ("good-user", "good-pass")
            );
        }
        other => panic!("{other:?}"),
    }
    let (status, body) = s
        .post(
            "/api-auth/basic/fb?connection_id=b2",
            json!({"username": "good-user", "password": "nope"}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "connection_test_failed");
    assert!(s.credentials("fb", "b2").await.is_none());
}

#[tokio::test]
async fn bad_requests_get_the_contract_error_and_store_nothing() {
    let s = setup().await;
    let client = reqwest::Client::new();
    let cases: Vec<(&str, Option<Value>, u16, &str)> = vec![
        // Wrong auth mode for the endpoint.
        (
            "/api-auth/basic/fake",
            Some(json!({"username": "u", "password": "p"})),
            400,
            "invalid_auth_mode",
        ),
        (
            "/api-auth/api-key/fb",
            Some(json!({"apiKey": "k"})),
            400,
            "invalid_auth_mode",
        ),
        // Unknown integration.
        (
            "/api-auth/api-key/nope",
            Some(json!({"apiKey": "k"})),
            404,
            "unknown_provider_config",
        ),
        (
            "/api-auth/basic/nope",
            Some(json!({"username": "u", "password": "p"})),
            404,
            "unknown_provider_config",
        ),
        // Malformed bodies.
        (
            "/api-auth/api-key/fake-unchecked",
            Some(json!({})),
            400,
            "invalid_body",
        ),
        (
            "/api-auth/api-key/fake-unchecked",
            Some(json!({"apiKey": 42})),
            400,
            "invalid_body",
        ),
        (
            "/api-auth/api-key/fake-unchecked",
            Some(json!({"apiKey": "k", "extra": 1})),
            400,
            "invalid_body",
        ),
        (
            "/api-auth/api-key/fake-unchecked",
            Some(json!({"apiKey": ""})),
            400,
            "invalid_request",
        ),
        (
            "/api-auth/api-key/fake-unchecked",
            Some(json!({"apiKey": "k".repeat(1025)})),
            400,
            "invalid_request",
        ),
        (
            "/api-auth/basic/fb",
            Some(json!({"username": "u"})),
            400,
            "invalid_body",
        ),
        (
            "/api-auth/api-key/fake-unchecked",
            None,
            400,
            "invalid_body",
        ),
        // Bad query parameters.
        (
            "/api-auth/api-key/fake-unchecked?user_scope=x",
            Some(json!({"apiKey": "k"})),
            400,
            "invalid_request",
        ),
        (
            "/api-auth/api-key/fake-unchecked?connection_id=",
            Some(json!({"apiKey": "k"})),
            400,
            "invalid_request",
        ),
    ];
    for (path, body, status, code) in cases {
        let mut req = client.post(format!("{}{path}", s.base)).bearer_auth(&s.key);
        req = match &body {
            Some(b) => req.json(b),
            None => req.body("apiKey=k"),
        };
        let res = req.send().await.unwrap();
        assert_eq!(res.status().as_u16(), status, "{path} {body:?}");
        let answer: Value = res.json().await.unwrap();
        assert_eq!(answer["error"]["code"], code, "{path} {body:?}: {answer}");
        assert!(
            answer["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{answer}"
        );
    }

    // No credentials, or someone else's.
    for auth in [
        None,
        Some("Bearer lasso_sk_nope"),
        Some("Bearer nango_connect_session_nope"),
        Some("Basic x"),
    ] {
        let mut req = client
            .post(format!("{}/api-auth/api-key/fake-unchecked", s.base))
            .json(&json!({"apiKey": "k"}));
        if let Some(h) = auth {
            req = req.header("authorization", h);
        }
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), 401, "{auth:?}");
    }
    let res = client
        .post(format!(
            "{}/api-auth/api-key/fake-unchecked?public_key=abc",
            s.base
        ))
        .json(&json!({"apiKey": "k"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    assert!(res.text().await.unwrap().contains("connect session token"));
    assert_eq!(s.connection_count().await, 0);
    assert!(
        s.fake.seen.lock().unwrap().is_empty(),
        "nothing reached the provider"
    );
}
