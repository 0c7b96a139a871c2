//! One outbound policy for every request made on a tenant's behalf (issue 14, item 2). Under the
//! production policy (no exceptions), a tenant points the proxy, a token endpoint, a credential
//! check and its webhooks at the network Lasso runs in. Loopback stands in for that network
//! here (the house rules keep test traffic on loopback): `127.0.0.1` exercises literal-address
//! URLs, `localhost` the resolver step, where a name is checked on the address it resolves to.

use lasso_services::EnvironmentId;
use std::sync::{Arc, Mutex};

use axum::extract::Request;
use lasso_services::environments;
use lasso_tests::*;
use serde_json::{Value, json};

/// A service inside the network: records every request it gets.
async fn internal_service() -> (u16, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let app = axum::Router::new().fallback(move |request: Request| {
        let log = log.clone();
        async move {
            log.lock().unwrap().push(request.uri().to_string());
            axum::Json(json!({"access_token": "t", "expires_in": 3600, "secret": "internal"}))
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (port, seen)
}

fn catalog(port: u16) -> String {
    format!(
        r#"
literal-api:
    display_name: An API on a literal loopback address
    auth_mode: API_KEY
    proxy:
        base_url: http://127.0.0.1:{port}
        headers: &key
            x-api-key: ${{apiKey}}
named-api:
    display_name: An API on a name that resolves to loopback
    auth_mode: API_KEY
    proxy:
        base_url: http://localhost:{port}
        headers: *key
mapped-api:
    display_name: An API on an IPv4-mapped IPv6 address
    auth_mode: API_KEY
    proxy:
        base_url: http://[::ffff:127.0.0.1]:{port}
        headers: *key
checked-api:
    display_name: An API whose credential check goes inside
    auth_mode: API_KEY
    proxy:
        base_url: http://localhost:{port}
        headers: *key
        verification:
            endpoints: [/me]
inside-cc:
    display_name: A token endpoint inside
    auth_mode: OAUTH2_CC
    token_url: http://localhost:{port}/token
"#
    )
}

struct Setup {
    app: TestApp,
    env_id: EnvironmentId,
}

setup_derefs_to_app!(Setup);

/// The api under the production policy: `LASSO_OUTBOUND_ALLOW` set to nothing.
async fn setup(port: u16) -> Setup {
    let app = TestApp::builder()
        .providers(&catalog(port))
        .setting("LASSO_OUTBOUND_ALLOW", "")
        .integration("literal", "literal-api", "")
        .integration("named", "named-api", "")
        .integration("mapped", "mapped-api", "")
        .integration("checked", "checked-api", "")
        .integration("cc", "inside-cc", "")
        .start()
        .await;
    Setup {
        env_id: app.env.id,
        app,
    }
}

fn says_refused(body: &Value) -> bool {
    body.to_string().contains("LASSO_OUTBOUND_ALLOW")
}

#[tokio::test]
async fn the_proxy_cannot_reach_the_network_lasso_runs_in() {
    let (port, seen) = internal_service().await;
    let s = setup(port).await;
    for integration in ["literal", "named", "mapped"] {
        let (status, body) = s
            .api
            .post(
                &format!("/api-auth/api-key/{integration}?connection_id=c1"),
                json!({"apiKey": "k"}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        let res = s
            .api
            .http
            .get(format!("{}/proxy/latest/meta-data", s.api.base))
            .bearer_auth(&s.api.key)
            .header("Connection-Id", "c1")
            .header("Provider-Config-Key", integration)
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        let body: Value = res.json().await.unwrap_or(Value::Null);
        assert!(
            (400..500).contains(&status) && says_refused(&body),
            "{integration}: {status} {body}"
        );
    }
    assert!(
        seen.lock().unwrap().is_empty(),
        "{:?}",
        seen.lock().unwrap()
    );
}

#[tokio::test]
async fn token_calls_and_credential_checks_cannot_reach_it_either() {
    let (port, seen) = internal_service().await;
    let s = setup(port).await;
    let (status, body) = s
        .api
        .post("/oauth2/auth/cc?connection_id=c1", json!({}))
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(says_refused(&body), "{body}");
    let (status, body) = s
        .api
        .post(
            "/api-auth/api-key/checked?connection_id=c1",
            json!({"apiKey": "k"}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(says_refused(&body), "{body}");
    assert!(
        seen.lock().unwrap().is_empty(),
        "{:?}",
        seen.lock().unwrap()
    );
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM connections")
        .fetch_one(&s.ctx.db)
        .await
        .unwrap();
    assert_eq!(stored, 0);
}

#[tokio::test]
async fn webhook_urls_inside_are_refused_when_set() {
    let (port, _seen) = internal_service().await;
    let s = setup(port).await;
    for url in [
        format!("http://127.0.0.1:{port}/hooks"),
        format!("http://localhost:{port}/hooks"),
        "http://[::1]/hooks".to_string(),
    ] {
        let (status, body) = s
            .api
            .patch("/environment", json!({"webhook_url": url}))
            .await;
        assert_eq!(status, 400, "{url}: {body}");
        assert!(says_refused(&body), "{body}");
        let (status, body) = s
            .api
            .post(
                "/connect/sessions",
                json!({"end_user": {"id": "u"}, "webhook_url_override": url}),
            )
            .await;
        assert_eq!(status, 400, "{url}: {body}");
        assert!(says_refused(&body), "{body}");
    }
    let webhook = environments::webhook_config(&s.ctx.db, &s.ctx.cipher, s.env_id)
        .await
        .unwrap();
    assert!(webhook.and_then(|w| w.url).is_none());
}
