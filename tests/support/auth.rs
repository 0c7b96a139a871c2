//! Support for the auth-flow tests: a real OAuth 2 server (npm `oauth2-mock-server`, run by node
//! on 127.0.0.1), a webhook receiver, and the api served at a URL known before its context is
//! built (OAuth redirect URIs are made from `LASSO_PUBLIC_URL`).

use lasso_services::EnvironmentId;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::routing::post;
use lasso_services::Context;
use lasso_services::integrations::{self, AppCredentials, NewIntegration};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpListener;
use tokio::process::{Child, Command};

/// oauth2-mock-server on an ephemeral port of 127.0.0.1, stopped when dropped. It checks PKCE:
/// a token request with a `code_verifier` that does not match the code's challenge is refused.
pub struct MockOAuthServer {
    /// `http://127.0.0.1:<port>`; `/authorize` and `/token` live under it.
    pub url: String,
    token_requests: Arc<Mutex<Vec<Value>>>,
    // Killed on drop; its stdin closing stops it too.
    _child: Child,
}

impl MockOAuthServer {
    /// Starts the server; `code_expires_in` sets the lifetime (seconds) of the tokens the
    /// authorization-code grant returns.
    pub async fn start(code_expires_in: Option<u64>) -> Self {
        let modules = crate::node_modules();
        assert!(
            modules.join("oauth2-mock-server").is_dir(),
            "oauth2-mock-server is not installed in {}; run `scripts/bootstrap --with-node`",
            modules.display()
        );
        let script =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("support/oauth2-mock-server.js");
        let mut command = Command::new("node");
        command
            .arg(script)
            .env("NODE_PATH", &modules)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        if let Some(secs) = code_expires_in {
            command.env("MOCK_CODE_EXPIRES_IN", secs.to_string());
        }
        let mut child = command.spawn().expect("start node (is Node.js installed?)");
        let mut lines = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        let ready = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .expect("oauth2-mock-server did not start within 30 s")
            .expect("read oauth2-mock-server output")
            .expect("oauth2-mock-server exited before it was ready");
        let url = ready
            .strip_prefix("READY ")
            .unwrap_or_else(|| panic!("unexpected oauth2-mock-server output: {ready}"))
            .trim_end_matches('/')
            .to_string();
        assert!(url.starts_with("http://127.0.0.1:"), "{url}");
        let token_requests = Arc::new(Mutex::new(Vec::new()));
        let sink = token_requests.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                let record: Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("bad oauth2-mock-server line {line}: {e}"));
                sink.lock().unwrap().push(record);
            }
        });
        Self {
            url,
            token_requests,
            _child: child,
        }
    }

    /// The token requests answered so far (grant, client authentication, PKCE verifier, ...),
    /// oldest first.
    pub fn token_requests(&self) -> Vec<Value> {
        self.token_requests.lock().unwrap().clone()
    }
}

/// Receives webhooks on 127.0.0.1 and keeps their bodies.
pub struct WebhookSink {
    pub url: String,
    bodies: Arc<Mutex<Vec<Value>>>,
}

impl WebhookSink {
    pub async fn start() -> Self {
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let sink = bodies.clone();
        let app = axum::Router::new().route(
            "/hooks",
            post(move |Json(body): Json<Value>| {
                let sink = sink.clone();
                async move {
                    sink.lock().unwrap().push(body);
                }
            }),
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}/hooks", listener.local_addr().expect("addr"));
        tokio::spawn(async move { axum::serve(listener, app).await.expect("serve webhooks") });
        Self { url, bodies }
    }

    pub fn bodies(&self) -> Vec<Value> {
        self.bodies.lock().unwrap().clone()
    }
}

/// A listener on an ephemeral local port and its base URL, to put in `LASSO_PUBLIC_URL` before
/// the context is built.
pub async fn listen() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    (listener, url)
}

/// Serves the api router on `listener`.
pub fn serve_api_on(listener: TcpListener, ctx: Context) {
    tokio::spawn(async move {
        axum::serve(listener, lasso_api::router(ctx))
            .await
            .expect("serve api");
    });
}

/// Creates integration `key` of `provider` with OAuth app `{key}-client` / `{key}-secret`.
pub async fn create_integration(
    ctx: &Context,
    environment_id: EnvironmentId,
    key: &str,
    provider: &str,
    scopes: &str,
) {
    integrations::create(
        &ctx.db,
        &ctx.cipher,
        environment_id,
        NewIntegration {
            unique_key: key.into(),
            provider: provider.into(),
            credentials: AppCredentials {
                client_id: Some(format!("{key}-client")),
                client_secret: Some(format!("{key}-secret")),
                scopes: Some(scopes.into()),
                webhook_secret: None,
            },
            ..Default::default()
        },
    )
    .await
    .expect("create integration");
}

/// A client that does not follow redirects, so a test can walk an OAuth flow step by step as a
/// browser would. Every one shares one cookie jar, as the tabs of one browser do: an OAuth flow
/// must end in the browser that started it (each flow's cookie has a name of its own).
pub fn browser() -> reqwest::Client {
    static JAR: std::sync::LazyLock<Arc<reqwest::cookie::Jar>> =
        std::sync::LazyLock::new(Arc::default);
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .cookie_provider(JAR.clone())
        .build()
        .expect("client")
}
