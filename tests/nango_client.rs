//! Nango's official Node client (`@nangohq/node` from npm, unmodified) against a real Lasso api:
//! `tests/node/nango-client.mjs` walks providers, integrations, connections, metadata, the
//! proxy (against a local fake provider API that echoes what it receives), records,
//! environment variables, connect sessions and webhook verification. This test serves what the
//! script needs and fails with its output.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use lasso_services::environments::{self, EnvironmentVariable};
use lasso_tests::auth::MockOAuthServer;
use lasso_tests::*;
use serde_json::json;

/// The fake provider API: answers every request with what it received, as JSON (`201` for a
/// POST), and an `x-fake-provider` header.
async fn echo(request: Request) -> impl IntoResponse {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 1 << 20)
        .await
        .unwrap_or_else(|_| Bytes::new());
    let headers: BTreeMap<String, String> = parts
        .headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                v.to_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let status = if parts.method == axum::http::Method::POST {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    (
        status,
        [("x-fake-provider", "echo")],
        axum::Json(json!({
            "method": parts.method.as_str(),
            "path": parts.uri.path(),
            "query": parts.uri.query(),
            "headers": headers,
            "body": String::from_utf8_lossy(&body),
        })),
    )
}

#[tokio::test]
async fn nangos_node_client_works_against_lasso() {
    let mock = MockOAuthServer::start(None).await;
    let fake = serve(axum::Router::new().fallback(echo)).await;
    let catalog = format!(
        r#"
fake-api:
    display_name: Fake API
    auth_mode: OAUTH2
    authorization_url: {mock}/authorize
    token_url: {mock}/token
    proxy:
        base_url: {fake}/api
fake-keys:
    display_name: Fake Keys
    auth_mode: API_KEY
    proxy:
        base_url: {fake}/keys
        headers:
            x-api-key: ${{apiKey}}
"#,
        mock = mock.url
    );
    let app = TestApp::builder().providers(&catalog).start().await;
    environments::set_variables(
        &app.ctx.db,
        &app.ctx.cipher,
        app.env.id,
        &[EnvironmentVariable {
            name: "LASSO_TEST_VARIABLE".into(),
            value: "from-lasso".into(),
        }],
    )
    .await
    .unwrap();

    let stdout = run_node_client(
        "nango-client.mjs",
        &[
            ("LASSO_HOST", &app.base),
            ("LASSO_SECRET_KEY", &app.key),
            ("FAKE_PROVIDER", "fake-api"),
            ("KEY_PROVIDER", "fake-keys"),
        ],
    )
    .await;
    assert!(
        stdout.contains("ok deleteIntegration with connections"),
        "the script stopped early:\n{stdout}"
    );
}
