//! Nango's frontend SDK (`@nangohq/frontend` 0.71.10 from npm, unmodified) in headless
//! Chromium (tests/browser/frontend-sdk.mjs): an app page served from a second loopback port,
//! so every call to Lasso is cross-origin, runs `nango.auth()` with connect session tokens.
//! OAuth2 goes through the SDK's popup and its WebSocket at Lasso's `/` against a real OAuth2
//! server (oauth2-mock-server); the API key path is a `fetch` with a CORS preflight. Also, over
//! plain HTTP: a browser's `GET /` without an upgrade still lands on the dashboard, and a
//! preflight of a session-token endpoint is answered without allowing credentials.

use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use lasso_tests::auth::MockOAuthServer;
use lasso_tests::*;
use serde_json::json;

pub(crate) const APP_PAGE: &str = r#"<!doctype html>
<html>
  <head><meta charset="utf-8"><title>An app using Nango's frontend SDK</title></head>
  <body>
    <button id="go">Connect</button>
    <script type="module">
      import Nango from '/sdk/index.js';
      window.Nango = Nango;
    </script>
  </body>
</html>
"#;

/// The app: its page, and the SDK's files from the npm package.
pub(crate) async fn sdk_file(Path(file): Path<String>) -> impl IntoResponse {
    let ok = file
        .strip_suffix(".js")
        .is_some_and(|stem| !stem.is_empty() && stem.chars().all(|c| c.is_ascii_alphanumeric()));
    let path = node_modules().join("@nangohq/frontend/dist").join(&file);
    match std::fs::read_to_string(&path) {
        Ok(source) if ok => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/javascript")],
            source,
        ),
        _ => (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "text/plain")],
            format!("{} not found", path.display()),
        ),
    }
}

fn catalog(mock: &str) -> String {
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
    let app = TestApp::builder()
        .providers(&catalog(&mock.url))
        .integration("mock-oauth", "mock-oauth", "read")
        .integration("keys", "keys", "")
        .start()
        .await;
    Setup { app, _mock: mock }
}

async fn session_token(api: &Api, integration: &str) -> String {
    let (status, body) = api
        .post(
            "/connect/sessions",
            json!({"end_user": {"id": "browser-user"}, "allowed_integrations": [integration]}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    body["data"]["token"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn nangos_frontend_sdk_connects_oauth2_and_api_key_from_another_origin() {
    let s = setup().await;
    let api = Api::new(&s.base, &s.key);
    let oauth_token = session_token(&api, "mock-oauth").await;
    let key_token = session_token(&api, "keys").await;
    let app = serve(
        axum::Router::new()
            .route(
                "/app.html",
                get(|| async { axum::response::Html(APP_PAGE) }),
            )
            .route("/sdk/{file}", get(sdk_file)),
    )
    .await;

    let run = browser::run_script(
        "frontend-sdk.mjs",
        &[
            ("LASSO_APP", &app),
            ("LASSO_BASE", &s.base),
            ("LASSO_OAUTH_SESSION_TOKEN", &oauth_token),
            ("LASSO_KEY_SESSION_TOKEN", &key_token),
        ],
    )
    .await;
    println!("{}", run.stdout);

    // What the page said it got is what Lasso stored.
    let (status, body) = api.get("/connections").await;
    assert_eq!(status, 200, "{body}");
    let connections = body["connections"].as_array().unwrap();
    let id_of = |key: &str| {
        connections
            .iter()
            .find(|c| c["provider_config_key"] == key)
            .unwrap_or_else(|| panic!("no {key} connection in {body}"))["connection_id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let oauth = id_of("mock-oauth");
    assert!(
        run.stdout.contains(&format!("oauth connection {oauth}")),
        "{}",
        run.stdout
    );
    let keyed = id_of("keys");
    assert!(
        run.stdout.contains(&format!("api key connection {keyed}")),
        "{}",
        run.stdout
    );
    let (status, connection) = api
        .get(&format!("/connections/{keyed}?provider_config_key=keys"))
        .await;
    assert_eq!(status, 200, "{connection}");
    assert_eq!(connection["credentials"]["apiKey"], "sk-from-the-browser");
}

#[tokio::test]
async fn root_redirects_browsers_and_session_endpoints_answer_preflights() {
    let s = setup().await;
    let http = lasso_tests::auth::browser();
    let page = http
        .get(format!("{}/", s.base))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(
        page.status(),
        303,
        "a browser's GET / goes to the dashboard"
    );
    assert_eq!(page.headers()["location"], "/ui/");

    let preflight = http
        .request(
            reqwest::Method::OPTIONS,
            format!("{}/api-auth/api-key/keys", s.base),
        )
        .header("origin", "http://127.0.0.1:9")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type")
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), 200);
    let headers = preflight.headers();
    assert_eq!(headers["access-control-allow-origin"], "*");
    assert!(
        headers["access-control-allow-methods"]
            .to_str()
            .unwrap()
            .contains("POST")
    );
    assert!(
        headers.get("access-control-allow-credentials").is_none(),
        "cookies must never be allowed"
    );
}
