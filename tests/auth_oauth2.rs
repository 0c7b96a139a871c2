//! The OAuth 2 flows against a real OAuth 2 server (npm `oauth2-mock-server`, which checks
//! PKCE), driven over HTTP the way a browser and a backend drive them: authorization code with
//! PKCE, callback, token exchange, stored connection, expiry and refresh; bad, replayed and
//! expired states, provider errors; client credentials.

use std::collections::BTreeMap;

use base64::Engine;
use chrono::{Duration, Utc};
use lasso_services::connections::{self, Credentials};
use lasso_services::integrations::{self, AppCredentials};
use lasso_tests::auth::{MockOAuthServer, WebhookSink, browser};
use lasso_tests::*;
use serde_json::{Value, json};
use sha2::Digest;

struct Setup {
    app: TestApp,
    mock: MockOAuthServer,
    hooks: WebhookSink,
}

setup_derefs_to_app!(Setup);

fn catalog(mock: &str) -> String {
    format!(
        r#"
mock-oauth:
    display_name: Mock OAuth
    auth_mode: OAUTH2
    authorization_url: {mock}/authorize
    token_url: {mock}/token
    authorization_params:
        audience: lasso-tests
    scope_separator: ','
    default_scopes: [openid]
    token_response_metadata: [token_type]
mock-oauth-basic:
    display_name: Mock OAuth (basic client auth, no PKCE)
    auth_mode: OAUTH2
    authorization_url: {mock}/authorize
    token_url: {mock}/token
    token_request_auth_method: basic
    disable_pkce: true
mock-cc:
    display_name: Mock client credentials
    auth_mode: OAUTH2_CC
    token_url: {mock}/token
mock-cc-broken:
    display_name: Mock client credentials with a grant the server refuses
    auth_mode: OAUTH2_CC
    token_url: {mock}/token
    token_params:
        grant_type: nonsense
"#
    )
}

async fn setup(code_expires_in: Option<u64>) -> Setup {
    let mock = MockOAuthServer::start(code_expires_in).await;
    let hooks = WebhookSink::start().await;
    let app = TestApp::builder()
        .providers(&catalog(&mock.url))
        .integration("mock", "mock-oauth", "read,write")
        .integration("mock-basic", "mock-oauth-basic", "")
        .integration("svc", "mock-cc", "jobs:read")
        .integration("svc-broken", "mock-cc-broken", "")
        .integration("shop", "shopify", "")
        .webhook_url(&hooks.url)
        .start()
        .await;
    Setup { app, mock, hooks }
}

fn query(url: &str) -> BTreeMap<String, String> {
    url::Url::parse(url)
        .unwrap()
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn location(res: &reqwest::Response) -> String {
    res.headers()
        .get("location")
        .unwrap_or_else(|| panic!("no Location in a {} answer", res.status()))
        .to_str()
        .unwrap()
        .to_string()
}

fn challenge(verifier: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier))
}

impl Setup {
    /// `GET /oauth/connect/...` with the secret key: the provider's authorization URL.
    async fn start_flow(&self, path_and_query: &str) -> String {
        let res = browser()
            .get(format!("{}{path_and_query}", self.base))
            .bearer_auth(&self.key)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 302, "{}", res.text().await.unwrap());
        location(&res)
    }

    /// The browser at the provider: the provider's redirect back to Lasso's callback.
    async fn consent(&self, authorize_url: &str) -> String {
        let res = browser().get(authorize_url).send().await.unwrap();
        assert_eq!(res.status(), 302, "{}", res.text().await.unwrap());
        let callback = location(&res);
        assert!(
            callback.starts_with(&format!("{}/oauth/callback?", self.base)),
            "{callback}"
        );
        callback
    }

    /// The browser back at Lasso: the callback page's status and HTML.
    async fn land(&self, callback_url: &str) -> (u16, String) {
        let res = browser().get(callback_url).send().await.unwrap();
        let status = res.status().as_u16();
        let content_type = res.headers()["content-type"].to_str().unwrap().to_string();
        assert!(content_type.starts_with("text/html"), "{content_type}");
        (status, res.text().await.unwrap())
    }

    async fn connection(&self, key: &str, id: &str) -> Option<connections::Connection> {
        match connections::get(&self.ctx.db, &self.ctx.cipher, self.env.id, key, id).await {
            Ok(c) => Some(c),
            Err(lasso_services::Error::NotFound { .. }) => None,
            Err(e) => panic!("{e}"),
        }
    }

    async fn connection_count(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM connections")
            .fetch_one(&self.ctx.db)
            .await
            .unwrap()
    }

    async fn api_get(&self, path: &str) -> (u16, Value) {
        let res = reqwest::Client::new()
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.key)
            .send()
            .await
            .unwrap();
        (res.status().as_u16(), res.json().await.unwrap())
    }
}

fn oauth2_token(c: &connections::Connection) -> connections::OAuth2Token {
    match &c.credentials {
        Credentials::OAuth2(t) => t.clone(),
        other => panic!("expected OAUTH2 credentials, got {}", other.type_name()),
    }
}

#[tokio::test]
async fn authorization_code_flow_end_to_end_with_pkce_expiry_and_refresh() {
    // Tokens from the code exchange live 10 minutes: inside the 15-minute refresh window.
    let s = setup(Some(600)).await;

    // 1. The authorize redirect, with PKCE and a fresh state.
    let authorize = s
        .start_flow("/oauth/connect/mock?connection_id=alice")
        .await;
    assert!(
        authorize.starts_with(&format!("{}/authorize?", s.mock.url)),
        "{authorize}"
    );
    let q = query(&authorize);
    assert_eq!(q["response_type"], "code");
    assert_eq!(q["client_id"], "mock-client");
    assert_eq!(q["redirect_uri"], format!("{}/oauth/callback", s.base));
    assert_eq!(
        q["scope"], "read,write",
        "integration scopes, the provider's separator"
    );
    assert_eq!(
        q["audience"], "lasso-tests",
        "the catalog's authorization params"
    );
    assert_eq!(q["code_challenge_method"], "S256");
    assert!(q["state"].len() >= 43, "256-bit state: {}", q["state"]);
    let code_challenge = q["code_challenge"].clone();

    // 2-3. The provider sends the browser back; the callback exchanges the code.
    let callback = s.consent(&authorize).await;
    assert_eq!(query(&callback)["state"], q["state"]);
    let (status, page) = s.land(&callback).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("nango_oauth_callback_success"), "{page}");
    assert!(page.contains("window.opener.postMessage"), "{page}");

    // The token request carried the verifier of the challenge and the exact redirect URI; the
    // server compared them (it refuses a verifier that does not match).
    let requests = s.mock.token_requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    let exchange = &requests[0];
    assert_eq!(exchange["grant_type"], "authorization_code");
    assert_eq!(exchange["status"], 200);
    let verifier = exchange["code_verifier"]
        .as_str()
        .expect("a code_verifier was sent");
    assert_eq!(challenge(verifier), code_challenge);
    assert_eq!(
        exchange["redirect_uri"],
        format!("{}/oauth/callback", s.base)
    );
    assert_eq!(
        exchange["client_id"], "mock-client",
        "client auth in the body"
    );
    assert_eq!(exchange["client_secret"], "mock-secret");

    // 4. The stored connection: access and refresh tokens, expiry, token metadata.
    let stored = s
        .connection("mock", "alice")
        .await
        .expect("connection stored");
    let token = oauth2_token(&stored);
    assert_eq!(
        token.access_token.split('.').count(),
        3,
        "a JWT from the server"
    );
    let first_refresh = token.refresh_token.clone().expect("refresh token stored");
    let left = token.expires_at.expect("expiry stored") - Utc::now();
    assert!(
        left > Duration::seconds(590) && left <= Duration::seconds(600),
        "{left}"
    );
    assert_eq!(stored.connection_config["token_type"], "Bearer");
    // Credentials are sealed at rest.
    let sealed: Vec<u8> = sqlx::query_scalar("SELECT credentials_encrypted FROM connections")
        .fetch_one(&s.ctx.db)
        .await
        .unwrap();
    assert!(
        !sealed
            .windows(first_refresh.len())
            .any(|w| w == first_refresh.as_bytes())
    );

    // The auth webhook reported the creation.
    let hooks = eventually(
        "the auth webhook",
        std::time::Duration::from_secs(5),
        || async {
            let b = s.hooks.bodies();
            (!b.is_empty()).then_some(b)
        },
    )
    .await;
    assert_eq!(hooks[0]["type"], "auth");
    assert_eq!(hooks[0]["operation"], "creation");
    assert_eq!(hooks[0]["success"], true);
    assert_eq!(hooks[0]["connectionId"], "alice");
    assert_eq!(hooks[0]["providerConfigKey"], "mock");
    assert_eq!(hooks[0]["provider"], "mock-oauth");
    assert_eq!(hooks[0]["authMode"], "OAUTH2");
    assert_eq!(hooks[0]["environment"], "prod");

    // 5. Expiry: the token expires within the refresh window, so reading the connection
    // refreshes it first with the refresh token.
    let (status, body) = s
        .api_get("/connections/alice?provider_config_key=mock&refresh_token=true")
        .await;
    assert_eq!(status, 200, "{body}");
    // (The server's JWTs differ only by their issue second; its refresh tokens always differ.)
    assert_ne!(
        body["credentials"]["refresh_token"],
        first_refresh.as_str(),
        "rotated"
    );
    let expires_at: chrono::DateTime<Utc> = body["credentials"]["expires_at"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        expires_at - Utc::now() > Duration::minutes(55),
        "{expires_at}"
    );
    let requests = s.mock.token_requests();
    assert_eq!(requests.len(), 2, "{requests:?}");
    assert_eq!(requests[1]["grant_type"], "refresh_token");
    assert_eq!(requests[1]["refresh_token"], first_refresh.as_str());

    // A fresh token is served as it is; force_refresh asks the server again.
    let (_, again) = s
        .api_get("/connections/alice?provider_config_key=mock&refresh_token=true")
        .await;
    assert_eq!(
        again["credentials"]["refresh_token"],
        body["credentials"]["refresh_token"]
    );
    assert_eq!(s.mock.token_requests().len(), 2);
    let (status, forced) = s
        .api_get(
            "/connections/alice?provider_config_key=mock&force_refresh=true&refresh_token=true",
        )
        .await;
    assert_eq!(status, 200, "{forced}");
    assert_ne!(
        forced["credentials"]["refresh_token"],
        body["credentials"]["refresh_token"]
    );
    let requests = s.mock.token_requests();
    assert_eq!(requests.len(), 3);
    assert_eq!(
        requests[2]["refresh_token"],
        body["credentials"]["refresh_token"]
    );

    // Authorizing the same connection id again replaces its credentials: an override.
    let authorize = s
        .start_flow("/oauth/connect/mock?connection_id=alice")
        .await;
    let (status, page) = s.land(&s.consent(&authorize).await).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(s.connection_count().await, 1);
    let hooks = eventually(
        "the override webhook",
        std::time::Duration::from_secs(5),
        || async {
            let b = s.hooks.bodies();
            (b.len() >= 2).then_some(b)
        },
    )
    .await;
    assert_eq!(hooks[1]["operation"], "override");
}

#[tokio::test]
async fn provider_settings_shape_the_flow() {
    let s = setup(None).await;

    // No PKCE when the provider disables it; client authentication in a Basic header.
    let authorize = s
        .start_flow("/oauth/connect/mock-basic?connection_id=bob&authorization_params[prompt]=consent&params[team]=t1")
        .await;
    let q = query(&authorize);
    assert!(!q.contains_key("code_challenge"), "{authorize}");
    assert!(!q.contains_key("code_challenge_method"));
    assert_eq!(q["prompt"], "consent", "the caller's authorization params");
    assert!(!q.contains_key("scope"), "no scopes, no scope parameter");
    let (status, page) = s.land(&s.consent(&authorize).await).await;
    assert_eq!(status, 200, "{page}");
    let exchange = &s.mock.token_requests()[0];
    assert_eq!(exchange["basic_client_id"], "mock-basic-client");
    assert_eq!(exchange["client_id"], Value::Null);
    assert_eq!(exchange["code_verifier"], Value::Null);
    let stored = s.connection("mock-basic", "bob").await.unwrap();
    assert_eq!(
        stored.connection_config["team"], "t1",
        "params become connection config"
    );

    // Without a connection id, a new one is made and returned through the callback page.
    let authorize = s.start_flow("/oauth/connect/mock").await;
    let (status, page) = s.land(&s.consent(&authorize).await).await;
    assert_eq!(status, 200);
    let ids: Vec<String> =
        sqlx::query_scalar("SELECT connection_id FROM connections WHERE connection_id <> 'bob'")
            .fetch_all(&s.ctx.db)
            .await
            .unwrap();
    assert_eq!(ids.len(), 1);
    assert!(uuid::Uuid::parse_str(&ids[0]).is_ok(), "{ids:?}");
    assert!(page.contains(&ids[0]), "the page names the connection");
}

#[tokio::test]
async fn pkce_is_checked_by_the_server() {
    let s = setup(None).await;
    // Someone swaps the challenge on its way to the provider: the exchange must fail, because
    // the server compares Lasso's verifier with the challenge it was given.
    let authorize = s
        .start_flow("/oauth/connect/mock?connection_id=carol")
        .await;
    let q = query(&authorize);
    let tampered = authorize.replace(
        &q["code_challenge"],
        &challenge("someone-elses-verifier-0123456789abcdefghijk"),
    );
    let (status, page) = s.land(&s.consent(&tampered).await).await;
    assert_eq!(status, 400, "{page}");
    assert!(
        page.contains("code_verifier provided does not match code_challenge"),
        "{page}"
    );
    assert!(page.contains("nango_oauth_callback_error"));
    assert_eq!(s.connection_count().await, 0);
}

#[tokio::test]
async fn bad_callbacks_create_nothing_and_leave_the_connection_alone() {
    let s = setup(None).await;
    let authorize = s
        .start_flow("/oauth/connect/mock?connection_id=alice")
        .await;
    let first_callback = s.consent(&authorize).await;
    assert_eq!(s.land(&first_callback).await.0, 200);
    let before = oauth2_token(&s.connection("mock", "alice").await.unwrap());
    let unchanged = async || {
        let now = oauth2_token(&s.connection("mock", "alice").await.unwrap());
        assert_eq!(now.access_token, before.access_token);
        assert_eq!(now.refresh_token, before.refresh_token);
        assert_eq!(s.connection_count().await, 1);
    };

    // Replayed state: the callback works once.
    let (status, page) = s.land(&first_callback).await;
    assert_eq!(status, 400, "{page}");
    assert!(page.contains("already completed"), "{page}");
    unchanged().await;

    // Unknown and missing state.
    let (status, page) = s
        .land(&format!("{}/oauth/callback?state=forged&code=abc", s.base))
        .await;
    assert_eq!(status, 400);
    assert!(page.contains("unknown OAuth state"), "{page}");
    let (status, page) = s.land(&format!("{}/oauth/callback?code=abc", s.base)).await;
    assert_eq!(status, 400);
    assert!(page.contains("no `state`"), "{page}");
    unchanged().await;

    // Expired session.
    let authorize = s
        .start_flow("/oauth/connect/mock?connection_id=alice")
        .await;
    let callback = s.consent(&authorize).await;
    sqlx::query("UPDATE oauth_sessions SET expires_at = now() - interval '1 second' WHERE consumed_at IS NULL")
        .execute(&s.ctx.db)
        .await
        .unwrap();
    let (status, page) = s.land(&callback).await;
    assert_eq!(status, 400);
    assert!(page.contains("expired"), "{page}");
    unchanged().await;

    // The provider reports an error instead of a code (the user said no).
    let authorize = s
        .start_flow("/oauth/connect/mock?connection_id=alice")
        .await;
    let state = query(&authorize)["state"].clone();
    let (status, page) = s
        .land(&format!(
            "{}/oauth/callback?state={state}&error=access_denied&error_description=The+user+said+no",
            s.base
        ))
        .await;
    assert_eq!(status, 400);
    assert!(page.contains("access_denied: The user said no"), "{page}");
    unchanged().await;
    let failure = eventually(
        "the failure webhook",
        std::time::Duration::from_secs(5),
        || async { s.hooks.bodies().into_iter().find(|b| b["success"] == false) },
    )
    .await;
    assert_eq!(failure["type"], "auth");
    assert_eq!(failure["connectionId"], "alice");
    assert_eq!(failure["error"]["type"], "invalid_callback");
    assert!(
        failure["error"]["description"]
            .as_str()
            .unwrap()
            .contains("access_denied")
    );

    // The token endpoint refuses the code.
    let authorize = s
        .start_flow("/oauth/connect/mock?connection_id=alice")
        .await;
    let state = query(&authorize)["state"].clone();
    let (status, page) = s
        .land(&format!(
            "{}/oauth/callback?state={state}&code=not-issued",
            s.base
        ))
        .await;
    assert_eq!(status, 400);
    assert!(
        page.contains("token endpoint of Mock OAuth answered 400"),
        "{page}"
    );
    assert!(!page.contains("mock-secret"), "no secret in the page");
    unchanged().await;
    // Its state is used up too.
    let (status, _) = s
        .land(&format!(
            "{}/oauth/callback?state={state}&code=not-issued",
            s.base
        ))
        .await;
    assert_eq!(status, 400);
    unchanged().await;
}

#[tokio::test]
async fn oauth_connect_refuses_bad_requests_with_json_or_a_page() {
    let s = setup(None).await;
    let get = |path: &str, auth: Option<&str>, html: bool| {
        let mut req = browser().get(format!("{}{path}", s.base));
        if let Some(key) = auth {
            req = req.bearer_auth(key);
        }
        if html {
            req = req.header("accept", "text/html,application/xhtml+xml");
        }
        req.send()
    };
    let key = Some(s.key.as_str());

    let res = get("/oauth/connect/nope", key, false).await.unwrap();
    assert_eq!(res.status(), 404);
    assert_eq!(
        res.json::<Value>().await.unwrap()["error"]["code"],
        "unknown_provider_config"
    );

    // A browser gets the same error as a page that tells the opener.
    let res = get("/oauth/connect/nope", key, true).await.unwrap();
    assert_eq!(res.status(), 404);
    let page = res.text().await.unwrap();
    assert!(page.contains("integration `nope` does not exist"), "{page}");
    assert!(page.contains("unknown_provider_config"), "{page}");

    let res = get("/oauth/connect/svc", key, false).await.unwrap();
    assert_eq!(res.status(), 400);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_auth_mode", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("OAUTH2_CC")
    );

    let res = get("/oauth/connect/mock", None, false).await.unwrap();
    assert_eq!(res.status(), 401);
    let res = get("/oauth/connect/mock", Some("lasso_sk_wrong"), false)
        .await
        .unwrap();
    assert_eq!(res.status(), 401);

    let res = get("/oauth/connect/mock?foo=bar", key, false)
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["errors"][0]["field"], "foo", "{body}");

    let res = get(
        "/oauth/connect/mock?authorization_params[state]=mine",
        key,
        false,
    )
    .await
    .unwrap();
    assert_eq!(res.status(), 400);
    let body: Value = res.json().await.unwrap();
    assert_eq!(
        body["error"]["errors"][0]["field"],
        "authorization_params[state]"
    );

    // An integration without an OAuth app cannot start a flow.
    integrations::update(
        &s.ctx.db,
        &s.ctx.cipher,
        s.env.id,
        "mock",
        integrations::IntegrationPatch {
            credentials: Some(AppCredentials::default()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let res = get("/oauth/connect/mock", key, false).await.unwrap();
    assert_eq!(res.status(), 400);
    assert_eq!(
        res.json::<Value>().await.unwrap()["error"]["code"],
        "missing_client_credentials"
    );
    // Connection config the provider needs is checked against the catalog and named.
    let res = get("/oauth/connect/shop", key, false).await.unwrap();
    assert_eq!(res.status(), 400);
    let body: Value = res.json().await.unwrap();
    assert_eq!(
        body["error"]["errors"][0]["field"], "params[subdomain]",
        "{body}"
    );
    let res = get(
        "/oauth/connect/shop?params[subdomain]=Not%20a%20shop",
        key,
        false,
    )
    .await
    .unwrap();
    assert_eq!(res.status(), 400);
    let res = get("/oauth/connect/shop?params[subdomain]=acme", key, false)
        .await
        .unwrap();
    assert_eq!(res.status(), 302);
    assert!(location(&res).starts_with("https://acme.myshopify.com/admin/oauth/authorize?"));
    let sessions: i64 = sqlx::query_scalar("SELECT count(*) FROM oauth_sessions")
        .fetch_one(&s.ctx.db)
        .await
        .unwrap();
    assert_eq!(sessions, 1, "only the accepted request stored a session");
    assert_eq!(s.connection_count().await, 0);
}

#[tokio::test]
async fn client_credentials_against_the_token_endpoint() {
    let s = setup(None).await;
    let client = reqwest::Client::new();
    let post = |path: &str, body: Value| {
        client
            .post(format!("{}{path}", s.base))
            .bearer_auth(&s.key)
            .json(&body)
            .send()
    };

    let res = post(
        "/oauth2/auth/svc?connection_id=svc-1",
        json!({"client_id": "cc-id", "client_secret": "cc-secret"}),
    )
    .await
    .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.json::<Value>().await.unwrap(),
        json!({"providerConfigKey": "svc", "connectionId": "svc-1"})
    );
    let request = &s.mock.token_requests()[0];
    assert_eq!(request["grant_type"], "client_credentials");
    assert_eq!(request["client_id"], "cc-id");
    assert_eq!(request["client_secret"], "cc-secret");
    assert_eq!(request["scope"], "jobs:read", "the integration's scopes");
    let stored = s.connection("svc", "svc-1").await.unwrap();
    let Credentials::OAuth2ClientCredentials {
        token,
        expires_at,
        client_id,
        ..
    } = &stored.credentials
    else {
        panic!("expected OAUTH2_CC credentials");
    };
    assert!(!token.is_empty());
    assert_eq!(client_id, "cc-id");
    assert!(expires_at.unwrap() - Utc::now() > Duration::minutes(55));

    // Without client credentials in the body, the integration's are used.
    let res = post("/oauth2/auth/svc?connection_id=svc-2", json!({}))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(s.mock.token_requests()[1]["client_id"], "svc-client");

    // A token the server refuses stores nothing.
    let res = post(
        "/oauth2/auth/svc-broken?connection_id=svc-3",
        json!({"client_id": "a", "client_secret": "b"}),
    )
    .await
    .unwrap();
    assert_eq!(res.status(), 400);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "provider_token_error", "{body}");
    assert!(!body.to_string().contains("\"b\""));
    assert!(s.connection("svc-broken", "svc-3").await.is_none());

    // Malformed bodies, wrong mode, unknown integration.
    let res = post("/oauth2/auth/svc", json!({"client_id": 5}))
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert_eq!(
        res.json::<Value>().await.unwrap()["error"]["code"],
        "invalid_body"
    );
    let res = post("/oauth2/auth/svc", json!({"cert": "x"}))
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let res = post("/oauth2/auth/mock", json!({})).await.unwrap();
    assert_eq!(res.status(), 400);
    assert_eq!(
        res.json::<Value>().await.unwrap()["error"]["code"],
        "invalid_auth_mode"
    );
    let res = post("/oauth2/auth/nope", json!({})).await.unwrap();
    assert_eq!(res.status(), 404);
    assert_eq!(s.connection_count().await, 2);
}
