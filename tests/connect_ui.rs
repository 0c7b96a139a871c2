//! The hosted Connect UI (`/connect-ui/`) opened by Nango's frontend SDK (`@nangohq/frontend`
//! 0.71.10 from npm, unmodified) in headless Chromium (tests/browser/connect-ui.mjs): an app on
//! a second loopback origin calls `openConnectUI()`; a person picks an integration and connects
//! an API key (a provider API here checks it) and an OAuth2 account (oauth2-mock-server), sees
//! readable errors for values that break the catalog's patterns, for a refused key and for a
//! token endpoint that cannot be reached (port 9 of loopback, where nothing listens), and
//! reconnects a connection with a reconnect session; the SDK's `onEvent` hears `connect` with
//! each connection id. Over plain HTTP: `connect_link`, the page's headers (framable, no
//! cookie), views that take only the bearer session token, and an OAuth2 form checked before
//! its popup goes to the provider.

use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use lasso_tests::auth::MockOAuthServer;
use lasso_tests::*;
use serde_json::{Value, json};

use crate::frontend_sdk::{APP_PAGE, sdk_file};

/// The provider API that checks keys (the catalog's `proxy.verification`): keys starting with
/// `sk-good` are accepted.
async fn provider_api() -> String {
    serve(axum::Router::new().route(
        "/me",
        get(|headers: HeaderMap| async move {
            let key = headers
                .get("x-api-key")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            if key.starts_with("sk-good") {
                StatusCode::OK
            } else {
                StatusCode::UNAUTHORIZED
            }
        }),
    ))
    .await
}

fn catalog(mock: &str, api: &str) -> String {
    format!(
        r#"
mock-oauth:
    display_name: Mock OAuth
    auth_mode: OAUTH2
    authorization_url: {mock}/authorize
    token_url: {mock}/token
    default_scopes: [openid]
keys:
    display_name: Keys
    auth_mode: API_KEY
    proxy:
        base_url: {api}
        headers:
            x-api-key: ${{apiKey}}
        verification:
            endpoints: [/me]
    credentials:
        apiKey:
            type: string
            title: API key
            description: Find it under Settings, then API.
            pattern: ^sk-[a-z0-9-]+$
            example: sk-live-123
    connection_config:
        workspace:
            type: string
            title: Workspace
            description: The first part of your Keys address.
            pattern: ^[a-z0-9-]+$
            prefix: https://
            suffix: .keys.test
            example: acme
broken-oauth:
    display_name: Broken OAuth
    auth_mode: OAUTH2
    authorization_url: {mock}/authorize
    token_url: http://127.0.0.1:9/token
tenant-oauth:
    display_name: Tenant OAuth
    auth_mode: OAUTH2
    authorization_url: {mock}/authorize
    token_url: {mock}/token
    connection_config:
        tenant:
            type: string
            title: Tenant
            pattern: ^[a-z]+$
            example: acme
basic-thing:
    display_name: Basic Thing
    auth_mode: BASIC
    proxy:
        base_url: {api}
not-allowed:
    display_name: Not Allowed Thing
    auth_mode: API_KEY
    proxy:
        base_url: {api}
"#
    )
}

struct Setup {
    app: TestApp,
    _mock: MockOAuthServer,
}

setup_derefs_to_app!(Setup);

async fn setup() -> Setup {
    let mock = MockOAuthServer::start(None).await;
    let provider = provider_api().await;
    let mut app = TestApp::builder().providers(&catalog(&mock.url, &provider));
    for key in [
        "mock-oauth",
        "keys",
        "broken-oauth",
        "tenant-oauth",
        "basic-thing",
        "not-allowed",
    ] {
        app = app.integration(key, key, "");
    }
    Setup {
        app: app.start().await,
        _mock: mock,
    }
}

impl Setup {
    async fn session(&self) -> Value {
        self.session_for(&["mock-oauth", "broken-oauth", "keys", "basic-thing"])
            .await
    }

    async fn session_for(&self, integrations: &[&str]) -> Value {
        let (status, body) = self
            .api
            .post(
                "/connect/sessions",
                json!({
                    "end_user": {"id": "browser-user"},
                    "allowed_integrations": integrations,
                }),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        body["data"].clone()
    }

    /// A connection of `keys` made by the backend, and a session that reconnects it.
    async fn reconnect_session(&self) -> String {
        let (status, body) = self
            .api
            .post(
                "/connections",
                json!({
                    "provider_config_key": "keys",
                    "connection_id": "existing-keys",
                    "connection_config": {"workspace": "acme"},
                    "credentials": {"type": "API_KEY", "apiKey": "sk-good-old"},
                }),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        let (status, body) = self
            .api
            .post(
                "/connect/sessions/reconnect",
                json!({"connection_id": "existing-keys", "integration_id": "keys"}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        body["data"]["token"].as_str().unwrap().to_string()
    }

    async fn api_key_of(&self, id: &str) -> Value {
        let (status, connection) = self
            .api
            .get(&format!("/connections/{id}?provider_config_key=keys"))
            .await;
        assert_eq!(status, 200, "{connection}");
        connection["credentials"]["apiKey"].clone()
    }
}

async fn app() -> String {
    serve(
        axum::Router::new()
            .route(
                "/app.html",
                get(|| async { axum::response::Html(APP_PAGE) }),
            )
            .route("/sdk/{file}", get(sdk_file)),
    )
    .await
}

/// The id the browser script printed after `label`.
fn printed<'a>(stdout: &'a str, label: &str) -> &'a str {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix(label))
        .unwrap_or_else(|| panic!("no `{label}` line in:\n{stdout}"))
        .trim()
}

#[tokio::test]
async fn open_connect_ui_connects_api_key_and_oauth2_accounts_and_reconnects() {
    let s = setup().await;
    let token = s.session().await["token"].as_str().unwrap().to_string();
    let reconnect = s.reconnect_session().await;
    let app = app().await;

    let run = browser::run_script(
        "connect-ui.mjs",
        &[
            ("LASSO_APP", &app),
            ("LASSO_BASE", &s.base),
            ("LASSO_SESSION_TOKEN", &token),
            ("LASSO_RECONNECT_TOKEN", &reconnect),
        ],
    )
    .await;
    println!("{}", run.stdout);

    // What the SDK heard is what Lasso stored.
    let keyed = printed(&run.stdout, "api key connection ");
    assert_eq!(s.api_key_of(keyed).await, "sk-good-key");
    let (status, connections) = s.api.get("/connections").await;
    assert_eq!(status, 200, "{connections}");
    let oauth = printed(&run.stdout, "oauth connection ");
    let stored = connections["connections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["connection_id"] == oauth)
        .unwrap_or_else(|| panic!("no connection {oauth} in {connections}"));
    assert_eq!(stored["provider_config_key"], "mock-oauth");
    assert_eq!(stored["end_user"]["id"], "browser-user", "{stored}");

    // The reconnect session re-authorized its own connection, not a new one.
    assert_eq!(printed(&run.stdout, "reconnected "), "existing-keys");
    assert_eq!(s.api_key_of("existing-keys").await, "sk-good-rotated");
}

#[tokio::test]
async fn the_page_is_framable_and_its_views_take_only_the_session_token() {
    let s = setup().await;
    let session = s.session().await;
    let token = session["token"].as_str().unwrap();
    assert_eq!(
        session["connect_link"],
        format!("{}/connect-ui/#session_token={token}", s.base),
        "the token rides in the fragment, which browsers never send"
    );

    let http = reqwest::Client::new();
    let page = http
        .get(format!(
            "{}/connect-ui/?apiURL=https://api.nango.dev",
            s.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let headers = page.headers().clone();
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("frame-ancestors *"), "{csp}");
    assert!(csp.contains("connect-src 'self'"), "{csp}");
    assert!(headers.get("x-frame-options").is_none());
    assert!(headers.get("set-cookie").is_none());
    assert_eq!(headers["cache-control"], "no-store");
    let html = page.text().await.unwrap();
    assert!(html.contains("/connect-ui/assets/connect.js"), "{html}");
    assert!(!html.contains("nango.dev"), "apiURL is not used");
    let script = http
        .get(format!("{}/connect-ui/assets/connect.js", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(script.status(), 200);

    // A view answers its session's bearer token, and nothing else: no token, or a cookie, is
    // an expired-session view.
    let view = |bearer: Option<&str>| {
        let mut request = http
            .get(format!("{}/connect-ui/views/start", s.base))
            .header("cookie", format!("lasso_session={token}"));
        if let Some(bearer) = bearer {
            request = request.bearer_auth(bearer);
        }
        request.send()
    };
    let answer = view(None).await.unwrap();
    assert_eq!(answer.status(), 401);
    let text = answer.text().await.unwrap();
    assert!(
        text.contains("This connection session has expired or was closed"),
        "{text}"
    );
    let answer = view(Some(token)).await.unwrap();
    assert_eq!(answer.status(), 200);
    assert!(answer.headers().get("set-cookie").is_none());
    let text = answer.text().await.unwrap();
    assert!(text.contains("Choose an integration"), "{text}");
    assert!(!text.contains("Not Allowed Thing"), "{text}");

    // An integration outside the session is not shown.
    let answer = http
        .get(format!(
            "{}/connect-ui/views/integrations/not-allowed",
            s.base
        ))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 400);
    let text = answer.text().await.unwrap();
    assert!(
        text.contains("This integration is not available here"),
        "{text}"
    );
}

#[tokio::test]
async fn an_oauth2_form_is_checked_before_the_popup_goes_to_the_provider() {
    let s = setup().await;
    let session = s.session_for(&["tenant-oauth"]).await;
    let token = session["token"].as_str().unwrap();
    let http = reqwest::Client::new();

    // One integration: straight to its form, with nothing to go back to.
    let start = http
        .get(format!("{}/connect-ui/views/start", s.base))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(start.contains("Connect Tenant OAuth"), "{start}");
    assert!(start.contains("Continue to Tenant OAuth"), "{start}");
    assert!(!start.contains(">Back<"), "{start}");

    let submit = |tenant: &'static str| {
        http.post(format!(
            "{}/connect-ui/views/integrations/tenant-oauth",
            s.base
        ))
        .bearer_auth(token)
        .form(&[("params[tenant]", tenant)])
        .send()
    };
    // A value that breaks the catalog's pattern is said in words, next to its field, and the
    // popup is sent nowhere.
    let answer = submit("Not Valid").await.unwrap();
    assert_eq!(answer.status(), 400);
    let text = answer.text().await.unwrap();
    assert!(
        text.contains("This doesn't look like a valid Tenant. It should look like “acme”."),
        "{text}"
    );
    assert!(text.contains(r#"aria-invalid="true""#), "{text}");
    assert!(!text.contains("data-oauth-url"), "{text}");

    // A good one: the popup goes to Lasso's /oauth/connect with the connection config (the
    // script adds the session token), and nothing is stored yet.
    let answer = submit("acme").await.unwrap();
    assert_eq!(answer.status(), 200);
    let text = answer.text().await.unwrap();
    assert!(
        text.contains(
            r#"data-oauth-url="/oauth/connect/tenant-oauth?params%5Btenant%5D=acme&amp;""#
        ),
        "{text}"
    );
    assert!(
        !text.contains(token),
        "the token is not written into the page"
    );
    let (_, connections) = s.api.get("/connections").await;
    assert_eq!(connections["connections"], json!([]), "{connections}");
}

/// Refreshes the README's picture of the Connect UI (docs/screenshots/connect-ui.png):
/// `scripts/screenshots`.
#[tokio::test]
#[ignore = "refreshes the README's screenshots; run by scripts/screenshots"]
async fn readme_screenshots() {
    let s = setup().await;
    let token = s.session().await["token"].as_str().unwrap().to_string();
    let reconnect = s.reconnect_session().await;
    let app = app().await;
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/screenshots");
    let dir = dir.display().to_string();
    browser::run_script(
        "connect-ui.mjs",
        &[
            ("LASSO_APP", &app),
            ("LASSO_BASE", &s.base),
            ("LASSO_SESSION_TOKEN", &token),
            ("LASSO_RECONNECT_TOKEN", &reconnect),
            ("LASSO_README_SCREENSHOTS", &dir),
        ],
    )
    .await;
}
