//! The proxy over real HTTP against a local fake provider API that records what it receives:
//! credential injection per auth mode, pass-through of headers, query, body and responses,
//! retries, 401 -> refresh -> retry, streaming, the base-URL rule, environment isolation, and
//! credentials kept out of errors and logs.

use lasso_services::EnvironmentId;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use futures::StreamExt;
use lasso_services::connections::{self, Credentials, NewConnection};
use lasso_services::integrations::{self, AppCredentials, NewIntegration};
use lasso_services::proxy::{self, ProxyRequest};
use lasso_services::{Error, environments};
use lasso_tests::*;
use reqwest::Method;
use serde_json::{Map, Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;

// ---------------------------------------------------------------------------------------------
// The fake provider

#[derive(Debug, Clone)]
struct Received {
    method: String,
    path: String,
    query: Option<String>,
    headers: HeaderMap,
    body: Bytes,
    at: Instant,
}

/// A canned answer for a path.
struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: String,
}

fn reply(status: u16, headers: &[(&'static str, &str)], body: &str) -> Reply {
    Reply {
        status,
        headers: headers.iter().map(|(k, v)| (*k, v.to_string())).collect(),
        body: body.to_string(),
    }
}

const LARGE_BYTES: usize = 64 * 1024 * 1024;
const LARGE_CHUNK: usize = 64 * 1024;
/// Sent before the fake provider waits for the test to let it finish.
const LARGE_HEAD: usize = 1024 * 1024;

#[derive(Default)]
struct FakeState {
    received: Mutex<Vec<Received>>,
    replies: Mutex<HashMap<String, VecDeque<Reply>>>,
    token_requests: Mutex<Vec<HashMap<String, String>>>,
    release_large: Notify,
}

struct Fake {
    base: String,
    state: Arc<FakeState>,
}

impl Fake {
    async fn start() -> Fake {
        let state = Arc::new(FakeState::default());
        let app = axum::Router::new()
            .fallback(fake_handler)
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Fake { base, state }
    }

    /// Answers the next requests to `path` with `replies`, in order; then it echoes again.
    fn script(&self, path: &str, replies: Vec<Reply>) {
        self.state
            .replies
            .lock()
            .unwrap()
            .entry(path.to_string())
            .or_default()
            .extend(replies);
    }

    fn calls(&self, path: &str) -> Vec<Received> {
        self.state
            .received
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }

    fn all_calls(&self) -> Vec<Received> {
        self.state.received.lock().unwrap().clone()
    }

    fn token_requests(&self) -> Vec<HashMap<String, String>> {
        self.state.token_requests.lock().unwrap().clone()
    }
}

async fn fake_handler(State(state): State<Arc<FakeState>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    let path = parts.uri.path().to_string();
    if path == "/token" {
        let form: HashMap<String, String> = url::form_urlencoded::parse(&body)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        state.token_requests.lock().unwrap().push(form);
        return json_response(
            200,
            json!({"access_token": "fresh-token", "refresh_token": "rt-2", "expires_in": 3600, "token_type": "bearer"}),
        );
    }
    state.received.lock().unwrap().push(Received {
        method: parts.method.to_string(),
        path: path.clone(),
        query: parts.uri.query().map(str::to_string),
        headers: parts.headers.clone(),
        body: body.clone(),
        at: Instant::now(),
    });
    if path.ends_with("/large") {
        return large_response(state);
    }
    let scripted = state
        .replies
        .lock()
        .unwrap()
        .get_mut(&path)
        .and_then(VecDeque::pop_front);
    if let Some(r) = scripted {
        let mut res = Response::new(Body::from(r.body));
        *res.status_mut() = StatusCode::from_u16(r.status).unwrap();
        for (k, v) in r.headers {
            res.headers_mut().insert(k, v.parse().unwrap());
        }
        return res;
    }
    json_response(
        200,
        json!({
            "method": parts.method.as_str(),
            "path": path,
            "query": parts.uri.query(),
            "body": String::from_utf8_lossy(&body),
        }),
    )
}

fn json_response(status: u16, body: Value) -> Response {
    let mut res = Response::new(Body::from(body.to_string()));
    *res.status_mut() = StatusCode::from_u16(status).unwrap();
    res.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    res
}

/// [`LARGE_BYTES`] generated chunk by chunk; after the first [`LARGE_HEAD`] bytes it waits
/// until the test calls `release_large`, so the test can see bytes arrive before it finishes.
fn large_response(state: Arc<FakeState>) -> Response {
    let chunks = futures::stream::unfold(0usize, move |sent| {
        let state = state.clone();
        async move {
            if sent >= LARGE_BYTES {
                return None;
            }
            if sent == LARGE_HEAD {
                state.release_large.notified().await;
            }
            let byte = b'a' + (sent / LARGE_CHUNK % 26) as u8;
            let chunk = Bytes::from(vec![byte; LARGE_CHUNK]);
            Some((Ok::<_, std::io::Error>(chunk), sent + LARGE_CHUNK))
        }
    });
    let mut res = Response::new(Body::from_stream(chunks));
    res.headers_mut()
        .insert("content-type", "application/octet-stream".parse().unwrap());
    res
}

// ---------------------------------------------------------------------------------------------
// Lasso wired to the fake provider

const PROVIDERS: &str = r#"
fake-oauth:
    display_name: Fake OAuth
    auth_mode: OAUTH2
    authorization_url: {base}/authorize
    token_url: {base}/token
    proxy:
        base_url: {base}/api
        retry:
            after: [x-wait-seconds]
            at: [x-reset-at]
fake-basic:
    display_name: Fake Basic
    auth_mode: BASIC
    proxy:
        base_url: {base}/basic
fake-key-header:
    display_name: Fake key in a header
    auth_mode: API_KEY
    proxy:
        base_url: {base}/keyh
        headers:
            authorization: Bearer ${apiKey}
            x-client: lasso-tests
fake-key-query:
    display_name: Fake key in the query
    auth_mode: API_KEY
    proxy:
        base_url: {base}/keyq
        query:
            api_key: ${apiKey}
fake-key-nowhere:
    display_name: Fake key without a template
    auth_mode: API_KEY
    proxy:
        base_url: {base}/nokey
fake-tenant:
    display_name: Fake tenant
    auth_mode: API_KEY
    proxy:
        base_url: {base}/tenants/${connectionConfig.tenant}
        headers:
            x-api-key: ${apiKey}
fake-down:
    display_name: Fake unreachable
    auth_mode: API_KEY
    proxy:
        base_url: {down}/api
        query:
            api_key: ${apiKey}
"#;

struct Lasso {
    fake: Fake,
    app: TestApp,
    env_id: EnvironmentId,
    http: reqwest::Client,
}

setup_derefs_to_app!(Lasso);

/// A base URL nothing listens on.
async fn closed_port_url() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}")
}

async fn lasso() -> Lasso {
    captured_logs();
    let fake = Fake::start().await;
    let file = temp_dir("lasso-proxy").join("providers.yaml");
    std::fs::write(
        &file,
        PROVIDERS
            .replace("{base}", &fake.base)
            .replace("{down}", &closed_port_url().await),
    )
    .unwrap();
    let app = TestApp::builder()
        .setting("LASSO_PROVIDERS_FILE", file.display().to_string())
        .environment("proxy")
        .start()
        .await;
    Lasso {
        fake,
        env_id: app.env.id,
        app,
        http: reqwest::Client::new(),
    }
}

impl Lasso {
    /// Creates integration `key` for `provider` in environment `env_id` (OAuth app `cid` /
    /// `csecret`) and connection `conn` on it.
    async fn connect_in(
        &self,
        env_id: EnvironmentId,
        key: &str,
        provider: &str,
        conn: &str,
        credentials: Value,
        config: Value,
    ) {
        let integration = match integrations::find(&self.ctx.db, env_id, key).await.unwrap() {
            Some(i) => i,
            None => integrations::create(
                &self.ctx.db,
                &self.ctx.cipher,
                env_id,
                NewIntegration {
                    unique_key: key.into(),
                    provider: provider.into(),
                    credentials: AppCredentials {
                        client_id: Some("cid".into()),
                        client_secret: Some("csecret".into()),
                        ..Default::default()
                    },
                    ..Default::default()
                },
            )
            .await
            .unwrap(),
        };
        connections::upsert(
            &self.ctx.db,
            &self.ctx.cipher,
            &integration,
            NewConnection {
                connection_id: conn.into(),
                credentials: Credentials::from_input(&credentials).unwrap(),
                connection_config: match config {
                    Value::Object(m) => m,
                    _ => Map::new(),
                },
                secret_config: Vec::new(),
                metadata: None,
                end_user: None,
                tags: Map::new(),
                webhook_url_override: None,
            },
        )
        .await
        .unwrap();
    }

    async fn connect(&self, key: &str, provider: &str, conn: &str, credentials: Value) {
        self.connect_in(self.env_id, key, provider, conn, credentials, json!({}))
            .await;
    }

    /// A proxy request through the api for connection `conn` of integration `key`.
    fn proxy(
        &self,
        method: Method,
        endpoint: &str,
        key: &str,
        conn: &str,
    ) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}/proxy{endpoint}", self.base))
            .bearer_auth(&self.key)
            .header("Connection-Id", conn)
            .header("Provider-Config-Key", key)
    }
}

fn oauth(access: &str, refresh: Option<&str>) -> Value {
    let mut v = json!({"type": "OAUTH2", "access_token": access});
    if let Some(r) = refresh {
        v["refresh_token"] = json!(r);
    }
    v
}

async fn error_of(res: reqwest::Response) -> (u16, Value) {
    let status = res.status().as_u16();
    (status, res.json().await.unwrap())
}

/// Sends a request line as given (no client-side normalisation of `..` or `//`) and returns the
/// status and body.
async fn raw_get(api: &str, target: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let addr = api.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut request = format!("GET {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8_lossy(&raw).to_string();
    let status = text[9..12].parse().unwrap();
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

// ---------------------------------------------------------------------------------------------
// Credential injection and pass-through

#[tokio::test]
async fn bearer_token_is_injected_and_the_call_passes_through() {
    let l = lasso().await;
    l.connect("crm", "fake-oauth", "u1", oauth("at-1", None))
        .await;

    let res = l
        .proxy(Method::GET, "/users?limit=5&q=a%20b", "crm", "u1")
        .header("Nango-Proxy-X-Custom", "custom-value")
        .header("Nango-Proxy-Accept", "application/vnd.fake+json")
        .header("Retries", "0")
        .header("Base-Url-Override", "")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap()["path"], "/api/users");
    let got = &l.fake.calls("/api/users")[0];
    assert_eq!(got.method, "GET");
    assert_eq!(got.query.as_deref(), Some("limit=5&q=a%20b"));
    assert_eq!(got.headers["authorization"], "Bearer at-1");
    assert_eq!(got.headers["x-custom"], "custom-value");
    assert_eq!(got.headers["accept"], "application/vnd.fake+json");
    for lasso_only in [
        "connection-id",
        "provider-config-key",
        "retries",
        "base-url-override",
    ] {
        assert!(!got.headers.contains_key(lasso_only), "{lasso_only} leaked");
    }
    assert!(
        !got.headers
            .iter()
            .any(|(_, v)| v.as_bytes() == format!("Bearer {}", l.key).as_bytes()),
        "the secret key went to the provider"
    );

    // Bodies and content types of every method with a body; DELETE too.
    for (method, body) in [
        (Method::POST, r#"{"name":"Ada"}"#),
        (Method::PUT, r#"{"name":"Grace"}"#),
        (Method::PATCH, r#"{"name":"Edsger"}"#),
        (Method::DELETE, ""),
    ] {
        let res = l
            .proxy(method.clone(), "/people/1", "crm", "u1")
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "{method}");
        let got = l.fake.calls("/api/people/1").pop().unwrap();
        assert_eq!(got.method, method.as_str());
        assert_eq!(got.body, body.as_bytes());
        assert_eq!(got.headers["content-type"], "application/json");
        assert_eq!(got.headers["authorization"], "Bearer at-1");
    }

    // The provider's status, headers and body come back unchanged, errors included.
    l.fake.script(
        "/api/things",
        vec![
            reply(
                201,
                &[("x-provider", "yes"), ("content-type", "text/plain")],
                "made it",
            ),
            reply(
                404,
                &[("content-type", "application/xml")],
                "<error>nope</error>",
            ),
        ],
    );
    let res = l
        .proxy(Method::POST, "/things", "crm", "u1")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    assert_eq!(res.headers()["x-provider"], "yes");
    assert_eq!(res.headers()["content-type"], "text/plain");
    assert_eq!(res.text().await.unwrap(), "made it");
    let res = l
        .proxy(Method::GET, "/things", "crm", "u1")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    assert_eq!(res.headers()["content-type"], "application/xml");
    assert_eq!(res.text().await.unwrap(), "<error>nope</error>");

    // HEAD goes through too.
    let res = l
        .proxy(Method::HEAD, "/users", "crm", "u1")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(l.fake.calls("/api/users").last().unwrap().method, "HEAD");
}

#[tokio::test]
async fn basic_credentials_are_injected() {
    let l = lasso().await;
    l.connect(
        "legacy",
        "fake-basic",
        "u1",
        json!({"type": "BASIC", "username": "ada", "password": "s3cret"}),
    )
    .await;
    let res = l
        .proxy(Method::GET, "/me", "legacy", "u1")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    // base64("ada:s3cret")
    assert_eq!(
        l.fake.calls("/basic/me")[0].headers["authorization"],
        "Basic YWRhOnMzY3JldA=="
    );
}

#[tokio::test]
async fn api_keys_go_where_the_catalog_says() {
    let l = lasso().await;
    let key = json!({"type": "API_KEY", "apiKey": "sk_live_42"});
    l.connect("h", "fake-key-header", "u1", key.clone()).await;
    l.connect("q", "fake-key-query", "u1", key.clone()).await;
    l.connect("n", "fake-key-nowhere", "u1", key.clone()).await;

    let res = l
        .proxy(Method::GET, "/items", "h", "u1")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let got = &l.fake.calls("/keyh/items")[0];
    assert_eq!(got.headers["authorization"], "Bearer sk_live_42");
    assert_eq!(got.headers["x-client"], "lasso-tests");

    // The key joins the caller's query, and replaces a parameter of the same name.
    let res = l
        .proxy(Method::GET, "/items?page=2&api_key=forged", "q", "u1")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let got = &l.fake.calls("/keyq/items")[0];
    assert_eq!(got.query.as_deref(), Some("page=2&api_key=sk_live_42"));
    assert!(!got.headers.contains_key("authorization"));

    // An API-key provider whose entry does not say where the key goes is a clear 400.
    let res = l
        .proxy(Method::GET, "/items", "n", "u1")
        .send()
        .await
        .unwrap();
    let (status, body) = error_of(res).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "invalid_request");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("proxy.headers") && message.contains("fake-key-nowhere"),
        "{message}"
    );
    assert!(!body.to_string().contains("sk_live_42"));
    assert!(l.fake.calls("/nokey/items").is_empty());
}

#[tokio::test]
async fn connection_config_fills_in_the_base_url() {
    let l = lasso().await;
    l.connect_in(
        l.env_id,
        "t",
        "fake-tenant",
        "u1",
        json!({"type": "API_KEY", "apiKey": "k1"}),
        json!({"tenant": "acme"}),
    )
    .await;
    l.connect_in(
        l.env_id,
        "t",
        "fake-tenant",
        "u2",
        json!({"type": "API_KEY", "apiKey": "k2"}),
        json!({}),
    )
    .await;
    let res = l
        .proxy(Method::GET, "/orders", "t", "u1")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        l.fake.calls("/tenants/acme/orders")[0].headers["x-api-key"],
        "k1"
    );

    // Without the value the base URL needs, a 400 names it.
    let (status, body) = error_of(
        l.proxy(Method::GET, "/orders", "t", "u2")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(
        body["error"]["errors"][0]["field"],
        "connectionConfig.tenant"
    );
}

// ---------------------------------------------------------------------------------------------
// Retries

#[tokio::test]
async fn retries_wait_as_retry_after_says_on_429() {
    let l = lasso().await;
    l.connect("crm", "fake-oauth", "u1", oauth("at-1", None))
        .await;
    l.fake.script(
        "/api/limited",
        vec![reply(429, &[("retry-after", "1")], "slow down")],
    );
    let res = l
        .proxy(Method::GET, "/limited", "crm", "u1")
        .header("Retries", "3")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let calls = l.fake.calls("/api/limited");
    assert_eq!(calls.len(), 2);
    let waited = calls[1].at - calls[0].at;
    assert!(
        waited >= Duration::from_millis(950) && waited < Duration::from_secs(3),
        "{waited:?}"
    );

    // An HTTP date works too.
    let soon = httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(2));
    l.fake.script(
        "/api/dated",
        vec![reply(429, &[("retry-after", &soon)], "")],
    );
    let res = l
        .proxy(Method::GET, "/dated", "crm", "u1")
        .header("Retries", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let calls = l.fake.calls("/api/dated");
    assert_eq!(calls.len(), 2);
    assert!(calls[1].at - calls[0].at >= Duration::from_millis(900));
}

#[tokio::test]
async fn the_providers_retry_headers_set_the_wait() {
    let l = lasso().await;
    l.connect("crm", "fake-oauth", "u1", oauth("at-1", None))
        .await;
    // `proxy.retry.after`: seconds to wait.
    l.fake.script(
        "/api/after",
        vec![reply(429, &[("x-wait-seconds", "1")], "")],
    );
    let res = l
        .proxy(Method::GET, "/after", "crm", "u1")
        .header("Retries", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let calls = l.fake.calls("/api/after");
    assert_eq!(calls.len(), 2);
    assert!(calls[1].at - calls[0].at >= Duration::from_millis(950));

    // `proxy.retry.at`: the reset time, in epoch seconds.
    let reset = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 2;
    l.fake.script(
        "/api/at",
        vec![reply(503, &[("x-reset-at", &reset.to_string())], "")],
    );
    let res = l
        .proxy(Method::GET, "/at", "crm", "u1")
        .header("Retries", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let calls = l.fake.calls("/api/at");
    assert_eq!(calls.len(), 2);
    let waited = calls[1].at - calls[0].at;
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(4),
        "{waited:?}"
    );
}

#[tokio::test]
async fn nothing_is_retried_unless_asked() {
    let l = lasso().await;
    l.connect("crm", "fake-oauth", "u1", oauth("at-1", None))
        .await;
    l.fake.script(
        "/api/limited",
        vec![
            reply(
                429,
                &[("retry-after", "1"), ("x-ratelimit-limit", "10")],
                r#"{"message":"slow down"}"#,
            ),
            reply(500, &[], "boom"),
        ],
    );
    let res = l
        .proxy(Method::GET, "/limited", "crm", "u1")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 429);
    assert_eq!(res.headers()["retry-after"], "1");
    assert_eq!(res.headers()["x-ratelimit-limit"], "10");
    assert_eq!(res.text().await.unwrap(), r#"{"message":"slow down"}"#);
    assert_eq!(l.fake.calls("/api/limited").len(), 1);
    let res = l
        .proxy(Method::GET, "/limited", "crm", "u1")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 500);
    assert_eq!(l.fake.calls("/api/limited").len(), 2);

    // A wait beyond what the proxy makes is not waited: the 429 comes back at once.
    l.fake.script(
        "/api/later",
        vec![reply(
            429,
            &[("retry-after", "3600")],
            "come back in an hour",
        )],
    );
    let started = Instant::now();
    let res = l
        .proxy(Method::GET, "/later", "crm", "u1")
        .header("Retries", "5")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 429);
    assert_eq!(res.headers()["retry-after"], "3600");
    assert_eq!(res.text().await.unwrap(), "come back in an hour");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(l.fake.calls("/api/later").len(), 1);
}

#[tokio::test]
async fn server_errors_retry_with_backoff_and_retry_on_adds_statuses() {
    let l = lasso().await;
    l.connect("crm", "fake-oauth", "u1", oauth("at-1", None))
        .await;
    l.fake
        .script("/api/flaky", vec![reply(503, &[], ""), reply(502, &[], "")]);
    let res = l
        .proxy(Method::POST, "/flaky", "crm", "u1")
        .header("Retries", "3")
        .body("same body every time")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let calls = l.fake.calls("/api/flaky");
    assert_eq!(calls.len(), 3);
    assert!(calls.iter().all(|c| c.body == "same body every time"));
    // Exponential backoff with jitter: at least half of 0.5 s, then of 1 s.
    let first = calls[1].at - calls[0].at;
    let second = calls[2].at - calls[1].at;
    assert!(
        first >= Duration::from_millis(240) && first <= Duration::from_millis(700),
        "{first:?}"
    );
    assert!(
        second >= Duration::from_millis(490) && second <= Duration::from_millis(1200),
        "{second:?}"
    );

    // Out of retries, the last answer comes back.
    l.fake.script(
        "/api/down",
        vec![
            reply(500, &[], "one"),
            reply(500, &[], "two"),
            reply(500, &[], "three"),
        ],
    );
    let res = l
        .proxy(Method::GET, "/down", "crm", "u1")
        .header("Retries", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 500);
    assert_eq!(res.text().await.unwrap(), "two");
    assert_eq!(l.fake.calls("/api/down").len(), 2);

    // 409 is not retried by default; Retry-On adds it.
    l.fake
        .script("/api/busy", vec![reply(409, &[], ""), reply(409, &[], "")]);
    let res = l
        .proxy(Method::GET, "/busy", "crm", "u1")
        .header("Retries", "2")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 409);
    assert_eq!(l.fake.calls("/api/busy").len(), 1);
    let res = l
        .proxy(Method::GET, "/busy", "crm", "u1")
        .header("Retries", "2")
        .header("Retry-On", "409, 423")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(l.fake.calls("/api/busy").len(), 3);

    // Bad steering headers are named.
    for (header, value) in [("Retries", "many"), ("Retry-On", "409,teapot")] {
        let res = l
            .proxy(Method::GET, "/busy", "crm", "u1")
            .header(header, value)
            .send()
            .await
            .unwrap();
        let (status, body) = error_of(res).await;
        assert_eq!(status, 400);
        assert_eq!(body["error"]["errors"][0]["field"], header);
    }
}

// ---------------------------------------------------------------------------------------------
// 401 -> refresh -> retry

#[tokio::test]
async fn unauthorized_refreshes_once_and_retries_with_the_new_token() {
    let l = lasso().await;
    l.connect(
        "crm",
        "fake-oauth",
        "u1",
        oauth("stale-token", Some("rt-1")),
    )
    .await;
    l.fake.script("/api/me", vec![reply(401, &[], "expired")]);
    let res = l
        .proxy(Method::GET, "/me", "crm", "u1")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let calls = l.fake.calls("/api/me");
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0].headers["authorization"], "Bearer stale-token");
    assert_eq!(calls[1].headers["authorization"], "Bearer fresh-token");
    let tokens = l.fake.token_requests();
    assert_eq!(tokens.len(), 1);
    assert_eq!(tokens[0]["grant_type"], "refresh_token");
    assert_eq!(tokens[0]["refresh_token"], "rt-1");
    // The new token is stored.
    let stored = connections::get(&l.ctx.db, &l.ctx.cipher, l.env_id, "crm", "u1")
        .await
        .unwrap();
    assert!(
        matches!(stored.credentials, Credentials::OAuth2(ref t) if t.access_token == "fresh-token")
    );

    // A second 401 goes back to the caller: one refresh, one retry, no loop.
    l.fake.script(
        "/api/admin",
        vec![
            reply(401, &[], "no"),
            reply(
                401,
                &[("www-authenticate", "Bearer error=\"insufficient_scope\"")],
                "still no",
            ),
            reply(401, &[], "never asked"),
        ],
    );
    let res = l
        .proxy(Method::GET, "/admin", "crm", "u1")
        .header("Retries", "3")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(
        res.headers()["www-authenticate"],
        "Bearer error=\"insufficient_scope\""
    );
    assert_eq!(res.text().await.unwrap(), "still no");
    assert_eq!(l.fake.calls("/api/admin").len(), 2);
    assert_eq!(l.fake.token_requests().len(), 2);

    // Without a refresh token there is nothing to refresh: the 401 comes straight back.
    l.connect("crm", "fake-oauth", "u2", oauth("only-access", None))
        .await;
    l.fake.script("/api/mine", vec![reply(401, &[], "expired")]);
    let res = l
        .proxy(Method::GET, "/mine", "crm", "u2")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(l.fake.calls("/api/mine").len(), 1);
    assert_eq!(l.fake.token_requests().len(), 2);
}

// ---------------------------------------------------------------------------------------------
// Streaming

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kb * 1024
}

#[test]
fn large_responses_stream_through() {
    run_alone("proxy::large_responses_stream_through_in_own_process");
}

#[tokio::test]
#[ignore = "measures the process's memory; large_responses_stream_through runs it alone"]
async fn large_responses_stream_through_in_own_process() {
    let l = lasso().await;
    l.connect("crm", "fake-oauth", "u1", oauth("at-1", None))
        .await;
    let before = rss_bytes();
    // The provider holds back the rest until the first bytes are here: a proxy that buffered
    // the whole body would never deliver them.
    let res = tokio::time::timeout(
        Duration::from_secs(10),
        l.proxy(Method::GET, "/large", "crm", "u1").send(),
    )
    .await
    .expect("the response starts before the provider has sent everything")
    .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "application/octet-stream");
    let mut body = res.bytes_stream();
    let mut received = 0usize;
    while received < LARGE_HEAD {
        let chunk = tokio::time::timeout(Duration::from_secs(10), body.next())
            .await
            .expect("the first bytes arrive before the provider has sent everything")
            .expect("more body")
            .unwrap();
        received += chunk.len();
    }
    l.fake.state.release_large.notify_one();
    let mut peak = rss_bytes();
    let mut chunks = 0u64;
    while let Some(chunk) = body.next().await {
        received += chunk.unwrap().len();
        chunks += 1;
        if chunks.is_multiple_of(64) {
            peak = peak.max(rss_bytes());
        }
    }
    assert_eq!(received, LARGE_BYTES);
    let growth = peak.saturating_sub(before);
    println!(
        "RSS grew by {growth} bytes while streaming {LARGE_BYTES}; logs {}",
        captured_logs().text().len()
    );
    assert!(
        growth < (LARGE_BYTES / 4) as u64,
        "memory grew by {growth} bytes while streaming {LARGE_BYTES}"
    );
}

// ---------------------------------------------------------------------------------------------
// Staying on the base URL

#[tokio::test]
async fn endpoints_cannot_leave_the_base_url() {
    let l = lasso().await;
    l.connect("crm", "fake-oauth", "u1", oauth("at-1", None))
        .await;
    let connection = connections::get(&l.ctx.db, &l.ctx.cipher, l.env_id, "crm", "u1")
        .await
        .unwrap();

    // Through the library, as scripts call it.
    let elsewhere = l.fake.base.replace("127.0.0.1", "localhost");
    for endpoint in [
        "https://evil.example/x".to_string(),
        format!("{elsewhere}/api/x"),
        "//evil.example/x".into(),
        "/../secret".into(),
        "/%2e%2e/secret".into(),
        "/a/../../secret".into(),
        format!("{}/secret", l.fake.base),
    ] {
        let e = proxy::send(
            &l.ctx,
            connection.clone(),
            &ProxyRequest::new(Method::GET, &endpoint),
        )
        .await
        .unwrap_err();
        assert!(
            matches!(e, Error::Invalid { ref field, .. } if field == "endpoint"),
            "{endpoint}: {e}"
        );
    }
    // An absolute URL under the base is fine (pagination links).
    let res = proxy::send(
        &l.ctx,
        connection.clone(),
        &ProxyRequest::new(Method::GET, format!("{}/api/page?n=2", l.fake.base)),
    )
    .await
    .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(l.fake.calls("/api/page")[0].query.as_deref(), Some("n=2"));

    // Through the api, with request lines no client library would normalise.
    let headers = [
        ("Authorization", format!("Bearer {}", l.key)),
        ("Connection-Id", "u1".to_string()),
        ("Provider-Config-Key", "crm".to_string()),
    ];
    let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    for target in [
        "/proxy/../secret",
        "/proxy//evil.example/x",
        "/proxy/a/%2e%2e/%2e%2e/secret",
    ] {
        let (status, body) = raw_get(&l.base, target, &headers).await;
        assert_eq!(status, 400, "{target}: {body}");
        let body: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["error"]["errors"][0]["field"], "endpoint", "{target}");
    }
    // `..` that stays under the base is resolved; `@host` is only a path segment.
    let (status, _) = raw_get(&l.base, "/proxy/", &headers).await;
    assert_eq!(status, 200);
    assert_eq!(l.fake.calls("/api/").len(), 1);
    let (status, _) = raw_get(&l.base, "/proxy/a/../b", &headers).await;
    assert_eq!(status, 200);
    assert_eq!(l.fake.calls("/api/b").len(), 1);
    let res = l
        .proxy(Method::GET, "/@evil.example", "crm", "u1")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(l.fake.calls("/api/@evil.example").len(), 1);
    let outside: Vec<_> = l
        .fake
        .all_calls()
        .into_iter()
        .filter(|c| !c.path.starts_with("/api/"))
        .collect();
    assert!(outside.is_empty(), "{outside:?}");
}

#[tokio::test]
async fn base_url_override_needs_the_integrations_permission() {
    let l = lasso().await;
    let other = Fake::start().await;
    l.connect("crm", "fake-oauth", "u1", oauth("at-1", None))
        .await;

    // Another origin is refused until the integration lists it.
    let res = l
        .proxy(Method::GET, "/x", "crm", "u1")
        .header("Base-Url-Override", format!("{}/v9", other.base))
        .send()
        .await
        .unwrap();
    let (status, body) = error_of(res).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["errors"][0]["field"], "Base-Url-Override");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("allowed_base_url_overrides"),
        "{body}"
    );
    assert!(other.all_calls().is_empty());

    // The provider's own origin needs no listing.
    let res = l
        .proxy(Method::GET, "/x", "crm", "u1")
        .header("Base-Url-Override", format!("{}/v2", l.fake.base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        l.fake.calls("/v2/x")[0].headers["authorization"],
        "Bearer at-1"
    );

    let mut custom = Map::new();
    custom.insert(
        proxy::ALLOWED_OVERRIDES_KEY.into(),
        json!([format!("{}/v9", other.base)]),
    );
    integrations::update(
        &l.ctx.db,
        &l.ctx.cipher,
        l.env_id,
        "crm",
        integrations::IntegrationPatch {
            custom: Some(custom),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let res = l
        .proxy(Method::GET, "/x", "crm", "u1")
        .header("Base-Url-Override", format!("{}/v9", other.base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        other.calls("/v9/x")[0].headers["authorization"],
        "Bearer at-1"
    );
    // Listed means that URL and below, not its siblings.
    let res = l
        .proxy(Method::GET, "/x", "crm", "u1")
        .header("Base-Url-Override", format!("{}/v10", other.base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert!(other.calls("/v10/x").is_empty());
}

// ---------------------------------------------------------------------------------------------
// Isolation, required headers, and secrets

#[tokio::test]
async fn a_key_cannot_use_another_environments_connections() {
    let l = lasso().await;
    let (other_env, other_key) = environments::create(&l.ctx.db, "other").await.unwrap();
    l.connect_in(
        other_env.id,
        "crm",
        "fake-oauth",
        "theirs",
        oauth("their-token", None),
        json!({}),
    )
    .await;
    l.connect_in(
        other_env.id,
        "billing",
        "fake-oauth",
        "theirs",
        oauth("their-token", None),
        json!({}),
    )
    .await;
    l.connect("crm", "fake-oauth", "mine", oauth("my-token", None))
        .await;

    for method in [Method::GET, Method::POST, Method::DELETE] {
        // Same integration key in both environments, but the connection is theirs.
        let res = l
            .proxy(method.clone(), "/x", "crm", "theirs")
            .send()
            .await
            .unwrap();
        let (status, body) = error_of(res).await;
        assert_eq!(status, 404, "{method}");
        assert_eq!(body["error"]["code"], "not_found");
        // An integration only they have.
        let res = l
            .proxy(method.clone(), "/x", "billing", "theirs")
            .send()
            .await
            .unwrap();
        let (status, body) = error_of(res).await;
        assert_eq!(status, 404);
        assert_eq!(body["error"]["code"], "unknown_provider_config");
        assert!(!body.to_string().contains("their-token"));
    }
    assert!(l.fake.all_calls().is_empty());

    // Their key works for theirs, and not for ours.
    let res = l
        .http
        .get(format!("{}/proxy/x", l.base))
        .bearer_auth(&other_key)
        .header("Connection-Id", "theirs")
        .header("Provider-Config-Key", "crm")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        l.fake.calls("/api/x")[0].headers["authorization"],
        "Bearer their-token"
    );
    let res = l
        .http
        .get(format!("{}/proxy/x", l.base))
        .bearer_auth(&other_key)
        .header("Connection-Id", "mine")
        .header("Provider-Config-Key", "crm")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    assert_eq!(l.fake.calls("/api/x").len(), 1);
}

#[tokio::test]
async fn requests_must_name_the_key_and_connection() {
    let l = lasso().await;
    l.connect("crm", "fake-oauth", "u1", oauth("at-1", None))
        .await;
    let res = l
        .http
        .get(format!("{}/proxy/x", l.base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let res = l
        .http
        .get(format!("{}/proxy/x", l.base))
        .bearer_auth(&l.key)
        .header("Provider-Config-Key", "crm")
        .send()
        .await
        .unwrap();
    let (status, body) = error_of(res).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "invalid_headers");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Connection-Id")
    );
    assert_eq!(body["error"]["errors"][0]["field"], "Connection-Id");
    let res = l
        .http
        .get(format!("{}/proxy/x", l.base))
        .bearer_auth(&l.key)
        .header("Connection-Id", "u1")
        .send()
        .await
        .unwrap();
    let (status, body) = error_of(res).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "invalid_headers");
    assert_eq!(
        body["error"]["errors"],
        json!([{"field": "Provider-Config-Key", "message": "is required"}])
    );

    // Bodies over the limit are refused before anything is sent.
    let res = l
        .proxy(Method::POST, "/upload", "crm", "u1")
        .body(vec![b'x'; proxy::MAX_REQUEST_BODY + 1])
        .send()
        .await
        .unwrap();
    let (status, body) = error_of(res).await;
    assert_eq!(status, 413);
    assert_eq!(body["error"]["code"], "payload_too_large");
    assert!(l.fake.calls("/api/upload").is_empty());
}

#[tokio::test]
async fn credentials_never_appear_in_errors_or_logs() {
    let l = lasso().await;
    let secrets = [
        "sk_down_secret",
        "stale-secret-token",
        "rt-secret",
        "fresh-token",
        "hunter2",
        // base64("ada:hunter2"), as the Basic header carries it
        "YWRhOmh1bnRlcjI=",
        &l.key,
    ];
    l.connect(
        "down",
        "fake-down",
        "u1",
        json!({"type": "API_KEY", "apiKey": "sk_down_secret"}),
    )
    .await;
    l.connect(
        "crm",
        "fake-oauth",
        "logged-conn",
        oauth("stale-secret-token", Some("rt-secret")),
    )
    .await;
    l.connect(
        "legacy",
        "fake-basic",
        "u1",
        json!({"type": "BASIC", "username": "ada", "password": "hunter2"}),
    )
    .await;

    // A provider that cannot be reached: 502 with our error shape, without the key (which was
    // in the query of the URL it tried).
    let res = l
        .proxy(Method::GET, "/x?page=1", "down", "u1")
        .header("Retries", "1")
        .send()
        .await
        .unwrap();
    let (status, body) = error_of(res).await;
    assert_eq!(status, 502);
    assert_eq!(body["error"]["code"], "proxy_upstream_unreachable");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("fake-down"),
        "{body}"
    );
    let mut errors = vec![body.to_string()];

    // A refresh, a retried 5xx, a basic-auth call and a refused endpoint.
    l.fake.script(
        "/api/me",
        vec![reply(401, &[], "expired"), reply(503, &[], "")],
    );
    let res = l
        .proxy(Method::GET, "/me", "crm", "logged-conn")
        .header("Retries", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let res = l
        .proxy(Method::GET, "/me", "legacy", "u1")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let res = l
        .proxy(Method::GET, "/x", "crm", "logged-conn")
        .header("Base-Url-Override", "https://evil.example/${accessToken}")
        .send()
        .await
        .unwrap();
    let (status, body) = error_of(res).await;
    assert_eq!(status, 400);
    errors.push(body.to_string());

    let logged = captured_logs().text();
    assert!(
        logged.contains("proxy call provider=fake-oauth connection=logged-conn"),
        "the proxy logs its calls:\n{logged}"
    );
    for secret in secrets {
        assert!(!logged.contains(secret), "`{secret}` was logged:\n{logged}");
        for e in &errors {
            assert!(!e.contains(secret), "`{secret}` in {e}");
        }
    }
}
