//! The integration's client secret goes only to the provider (issue 14, item 1). An end user
//! holding a connect session tries to make Lasso send the OAuth app's credentials, an
//! authorization code or a token to a host of their choosing: through a connection config value
//! that forms the whole host of a token or authorization URL, through a token response field
//! that later chooses the proxy's base URL, through a redirect from the token endpoint; and a
//! token endpoint tries to make Lasso read an unbounded body.
//!
//! Everything listens on loopback: the provider on `localhost` (a name the test catalog
//! declares as the provider's domain), the attacker on `127.0.0.1` (which it does not).

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use lasso_services::integrations::{self, AppCredentials, NewIntegration};
use lasso_tests::auth::browser;
use lasso_tests::*;
use serde_json::{Value, json};

/// Every request a fake server received: path and body.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<(String, String)>>>);

impl Seen {
    fn all(&self) -> Vec<(String, String)> {
        self.0.lock().unwrap().clone()
    }
}

/// An attacker's server on 127.0.0.1: counts every TCP connection, so even a TLS handshake
/// (the builtin entries use https) shows that Lasso tried to reach it.
struct Attacker {
    port: u16,
    connections: Arc<Mutex<usize>>,
    seen: Seen,
}

async fn attacker() -> Attacker {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let connections = Arc::new(Mutex::new(0));
    let seen = Seen::default();
    let (count, log) = (connections.clone(), seen.clone());
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            *count.lock().unwrap() += 1;
            let log = log.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                let n =
                    tokio::time::timeout(std::time::Duration::from_secs(2), stream.read(&mut buf))
                        .await
                        .ok()
                        .and_then(Result::ok)
                        .unwrap_or(0);
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                log.0.lock().unwrap().push((String::new(), text));
                let body = r#"{"access_token":"stolen","expires_in":3600}"#;
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(answer.as_bytes()).await;
            });
        }
    });
    Attacker {
        port,
        connections,
        seen,
    }
}

impl Attacker {
    fn connections(&self) -> usize {
        *self.connections.lock().unwrap()
    }
}

/// The provider's token endpoint on `localhost`: `/token` answers a token (with an
/// `instance_url` chosen by the test), `/redirect` sends the request on to `redirect_to` with a
/// 307 (which repeats the POST and its body), `/huge` answers a 64 MiB body.
async fn provider(instance_url: String, redirect_to: String) -> (String, Seen) {
    let seen = Seen::default();
    let log = seen.clone();
    let app = axum::Router::new().fallback(move |request: Request| {
        let (log, instance_url, redirect_to) =
            (log.clone(), instance_url.clone(), redirect_to.clone());
        async move {
            let path = request.uri().path().to_string();
            let body: Bytes = axum::body::to_bytes(request.into_body(), usize::MAX)
                .await
                .unwrap_or_default();
            log.0
                .lock()
                .unwrap()
                .push((path.clone(), String::from_utf8_lossy(&body).into_owned()));
            let response: Response = match path.as_str() {
                "/redirect" => (
                    StatusCode::TEMPORARY_REDIRECT,
                    [("location", redirect_to.as_str())],
                )
                    .into_response(),
                "/huge" => {
                    let mut big = String::from("{\"access_token\":\"t\",\"pad\":\"");
                    big.push_str(&"x".repeat(64 * 1024 * 1024));
                    big.push_str("\"}");
                    ([("content-type", "application/json")], big).into_response()
                }
                _ => axum::Json(json!({
                    "access_token": "real-token",
                    "expires_in": 3600,
                    "instance_url": instance_url,
                }))
                .into_response(),
            };
            response
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://localhost:{port}"), seen)
}

fn catalog(provider: &str) -> String {
    format!(
        r#"
host-cc:
    display_name: Client credentials on the tenant's own host
    auth_mode: OAUTH2_CC
    token_url: http://${{connectionConfig.hostname}}/token
    lasso:
        allowed_domains: [localhost]
    proxy:
        base_url: http://${{connectionConfig.hostname}}
    connection_config:
        hostname:
            type: string
            title: Host
host-cc-undeclared:
    display_name: The same entry as Nango's format has it, without Lasso's domains
    auth_mode: OAUTH2_CC
    token_url: http://${{connectionConfig.hostname}}/token
    connection_config:
        hostname:
            type: string
            title: Host
instance-cc:
    display_name: A token response that names the API's base URL
    auth_mode: OAUTH2_CC
    token_url: {provider}/token
    token_response_metadata: [instance_url]
    lasso:
        allowed_domains: [localhost]
    proxy:
        base_url: ${{connectionConfig.instance_url}}
    connection_config:
        instance_url:
            type: string
            automated: true
redirect-cc:
    display_name: A token endpoint that redirects
    auth_mode: OAUTH2_CC
    token_url: {provider}/redirect
huge-cc:
    display_name: A token endpoint that answers without end
    auth_mode: OAUTH2_CC
    token_url: {provider}/huge
"#
    )
}

async fn setup(provider_url: &str) -> Setup {
    Setup {
        app: TestApp::builder()
            .providers(&catalog(provider_url))
            .start()
            .await,
    }
}

struct Setup {
    app: TestApp,
}

setup_derefs_to_app!(Setup);

impl Setup {
    async fn integration(&self, key: &str, provider: &str, custom: Value) {
        let Value::Object(custom) = custom else {
            panic!("custom is an object")
        };
        integrations::create(
            &self.ctx.db,
            &self.ctx.cipher,
            self.env.id,
            NewIntegration {
                unique_key: key.into(),
                provider: provider.into(),
                credentials: AppCredentials {
                    client_id: Some(format!("{key}-client")),
                    client_secret: Some(format!("{key}-secret")),
                    scopes: None,
                    webhook_secret: None,
                },
                custom,
                ..Default::default()
            },
        )
        .await
        .expect("create integration");
    }

    /// A connect session for an end user, allowed every integration.
    async fn session(&self) -> String {
        let res = reqwest::Client::new()
            .post(format!("{}/connect/sessions", self.base))
            .bearer_auth(&self.key)
            .json(&json!({"end_user": {"id": "mallory"}}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201);
        res.json::<Value>().await.unwrap()["data"]["token"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// The end user's client-credentials request with `params`.
    async fn client_credentials(&self, integration: &str, params: &[(&str, &str)]) -> (u16, Value) {
        let token = self.session().await;
        let mut url = url::Url::parse(&format!("{}/oauth2/auth/{integration}", self.base)).unwrap();
        url.query_pairs_mut()
            .append_pair("connect_session_token", &token);
        for (k, v) in params {
            url.query_pairs_mut()
                .append_pair(&format!("params[{k}]"), v);
        }
        let res = reqwest::Client::new()
            .post(url)
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    async fn connections(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM connections")
            .fetch_one(&self.ctx.db)
            .await
            .unwrap()
    }
}

fn message(body: &Value) -> String {
    body["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn field(body: &Value) -> String {
    body["error"]["errors"][0]["field"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn a_hostname_param_cannot_send_the_client_secret_to_another_host() {
    let evil = attacker().await;
    let (provider_url, seen) = provider(String::new(), String::new()).await;
    let s = setup(&provider_url).await;
    s.integration("host", "host-cc", json!({})).await;
    s.integration("nango-format", "host-cc-undeclared", json!({}))
        .await;
    s.integration(
        "allowed",
        "host-cc-undeclared",
        json!({"allowed_hosts": ["localhost"]}),
    )
    .await;
    let evil_host = format!("127.0.0.1:{}", evil.port);

    // The attack: the end user names their own host.
    let (status, body) = s
        .client_credentials("host", &[("hostname", &evil_host)])
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(field(&body), "params[hostname]", "{body}");
    assert!(message(&body).contains("custom.allowed_hosts"), "{body}");
    // An entry in Nango's format declares no domain: refused too, naming the setting.
    let (status, body) = s
        .client_credentials("nango-format", &[("hostname", &evil_host)])
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(message(&body).contains("custom.allowed_hosts"), "{body}");
    assert_eq!(evil.connections(), 0, "nothing was sent to the attacker");
    assert!(evil.seen.all().is_empty());

    // The provider's own domain works, as does a host the integration allows.
    let provider_host = provider_url.trim_start_matches("http://");
    let (status, body) = s
        .client_credentials("host", &[("hostname", provider_host)])
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = s
        .client_credentials("allowed", &[("hostname", provider_host)])
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(seen.all().len(), 2);
    assert_eq!(s.connections().await, 2);
}

#[tokio::test]
async fn builtin_entries_keep_the_client_secret_on_their_providers_domains() {
    let evil = attacker().await;
    let s = setup("http://localhost:1").await;
    s.integration("auth0", "auth0-cc", json!({})).await;
    s.integration("sf", "salesforce-cc", json!({})).await;
    s.integration("sf-web", "salesforce", json!({})).await;
    let evil_host = format!("127.0.0.1:{}", evil.port);

    // Auth0 and Salesforce client credentials: the token request would go to the attacker.
    for integration in ["auth0", "sf"] {
        let (status, body) = s
            .client_credentials(
                integration,
                &[("hostname", &evil_host), ("audience", "https://api")],
            )
            .await;
        assert_eq!(status, 400, "{integration}: {body}");
        assert_eq!(field(&body), "params[hostname]", "{body}");
    }
    // A value that is not a host name at all is refused by the catalog's `format`.
    let (status, body) = s
        .client_credentials(
            "auth0",
            &[
                ("hostname", "acme.auth0.com/x#"),
                ("audience", "https://api"),
            ],
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(message(&body).contains("hostname"), "{body}");

    // Salesforce's web flow: the browser would be sent to the attacker, and the callback would
    // post the code, the PKCE verifier and the client secret there.
    let token = s.session().await;
    let res = browser()
        .get(format!(
            "{}/oauth/connect/sf-web?connect_session_token={token}&params[hostname]={evil_host}",
            s.base
        ))
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    let location = res
        .headers()
        .get("location")
        .map(|l| l.to_str().unwrap().to_string());
    assert_ne!(status, 302, "sent the browser to {location:?}");
    let sessions: i64 = sqlx::query_scalar("SELECT count(*) FROM oauth_sessions")
        .fetch_one(&s.ctx.db)
        .await
        .unwrap();
    assert_eq!(sessions, 0);
    assert_eq!(evil.connections(), 0, "nothing was sent to the attacker");
    assert_eq!(s.connections().await, 0);
}

#[tokio::test]
async fn a_token_response_cannot_choose_where_the_proxy_sends_the_token() {
    let evil = attacker().await;
    let evil_url = format!("http://127.0.0.1:{}", evil.port);
    let (provider_url, _seen) = provider(evil_url.clone(), String::new()).await;
    let s = setup(&provider_url).await;
    s.integration("inst", "instance-cc", json!({})).await;

    let (status, body) = s.client_credentials("inst", &[]).await;
    assert_eq!(status, 400, "{body}");
    assert!(message(&body).contains("instance_url"), "{body}");
    assert!(message(&body).contains("custom.allowed_hosts"), "{body}");
    assert_eq!(s.connections().await, 0, "nothing stored");
    assert_eq!(evil.connections(), 0);
}

#[tokio::test]
async fn a_token_endpoint_cannot_redirect_the_client_secret() {
    let evil = attacker().await;
    let evil_url = format!("http://127.0.0.1:{}/oauth/token", evil.port);
    let (provider_url, seen) = provider(String::new(), evil_url).await;
    let s = setup(&provider_url).await;
    s.integration("redir", "redirect-cc", json!({})).await;

    let (status, body) = s.client_credentials("redir", &[]).await;
    assert_ne!(status, 200, "{body}");
    assert_eq!(seen.all().len(), 1, "the provider was asked once");
    assert!(
        evil.seen.all().is_empty(),
        "the redirect carried the secret to the attacker: {:?}",
        evil.seen.all()
    );
    assert_eq!(evil.connections(), 0);
    assert_eq!(s.connections().await, 0);
}

#[tokio::test]
async fn a_token_endpoint_body_is_read_only_up_to_a_bound() {
    let (provider_url, _seen) = provider(String::new(), String::new()).await;
    let s = setup(&provider_url).await;
    s.integration("huge", "huge-cc", json!({})).await;

    let (status, body) = s.client_credentials("huge", &[]).await;
    assert_ne!(status, 200, "a 64 MiB token response was accepted");
    assert!(message(&body).contains("too large"), "{body}");
    assert_eq!(s.connections().await, 0);
}
