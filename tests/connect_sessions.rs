//! Connect sessions over HTTP: created with the secret key, used by a frontend in its place on
//! every auth endpoint (OAuth against a real OAuth 2 server), limited to their integrations and
//! end user, expiring after 30 minutes, deleted on request; reconnect sessions that
//! re-authorize one connection; and environments that cannot reach each other.

use chrono::{Duration, Utc};
use lasso_services::EnvironmentId;
use lasso_services::connections::{self, Credentials};
use lasso_services::crypto::token_digest;
use lasso_services::environments::Environment;
use lasso_tests::auth::{MockOAuthServer, WebhookSink, browser, create_integration};
use lasso_tests::*;
use serde_json::{Value, json};

fn catalog(mock: &str) -> String {
    format!(
        r#"
mock-oauth:
    display_name: Mock OAuth
    auth_mode: OAUTH2
    authorization_url: {mock}/authorize
    token_url: {mock}/token
    connection_config:
        instance_url:
            type: string
            automated: true
keys:
    display_name: Keys
    auth_mode: API_KEY
    proxy:
        base_url: https://keys.invalid
"#
    )
}

struct Setup {
    /// Environment `prod` (A) and its key.
    app: TestApp,
    /// Environment `staging` (B) and its key.
    env_b: Environment,
    key_b: String,
    mock: MockOAuthServer,
    hooks: WebhookSink,
}

setup_derefs_to_app!(Setup);

async fn setup() -> Setup {
    let mock = MockOAuthServer::start(None).await;
    let hooks = WebhookSink::start().await;
    let app = TestApp::builder()
        .providers(&catalog(&mock.url))
        .integration("mock", "mock-oauth", "")
        .integration("keys", "keys", "")
        .integration("other-keys", "keys", "")
        .webhook_url(&hooks.url)
        .start()
        .await;
    let (env_b, api_b) = app.add_environment("staging").await;
    create_integration(&app.ctx, env_b.id, "b-keys", "keys", "").await;
    Setup {
        app,
        env_b,
        key_b: api_b.key,
        mock,
        hooks,
    }
}

/// How a request authenticates.
enum As<'a> {
    Key(&'a str),
    /// A connect session token in `Authorization: Bearer`.
    Session(&'a str),
    Nobody,
}

impl Setup {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        who: As<'_>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = browser().request(method, format!("{}{path}", self.base));
        req = match who {
            As::Key(k) | As::Session(k) => req.bearer_auth(k),
            As::Nobody => req,
        };
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        let text = res.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn post(&self, path: &str, who: As<'_>, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::POST, path, who, Some(body))
            .await
    }

    async fn new_session(&self, body: Value) -> String {
        let (status, answer) = self
            .post("/connect/sessions", As::Key(&self.key), body)
            .await;
        assert_eq!(status, 201, "{answer}");
        answer["data"]["token"].as_str().unwrap().to_string()
    }

    async fn connection(
        &self,
        env: EnvironmentId,
        key: &str,
        id: &str,
    ) -> Option<connections::Connection> {
        connections::get(&self.ctx.db, &self.ctx.cipher, env, key, id)
            .await
            .ok()
    }

    async fn connection_count(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM connections")
            .fetch_one(&self.ctx.db)
            .await
            .unwrap()
    }

    /// The OAuth flow of a browser holding `token`, from `GET /oauth/connect` to the callback
    /// page; returns the authorization URL and the page's status and body.
    async fn oauth_with_session(&self, integration: &str, token: &str) -> (String, u16, String) {
        let res = browser()
            .get(format!(
                "{}/oauth/connect/{integration}?connect_session_token={token}",
                self.base
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 302, "{}", res.text().await.unwrap());
        let authorize = res.headers()["location"].to_str().unwrap().to_string();
        let res = browser().get(&authorize).send().await.unwrap();
        let callback = res.headers()["location"].to_str().unwrap().to_string();
        let res = browser().get(&callback).send().await.unwrap();
        let status = res.status().as_u16();
        (authorize, status, res.text().await.unwrap())
    }
}

fn api_key_of(c: &connections::Connection) -> &str {
    match &c.credentials {
        Credentials::ApiKey { api_key } => api_key,
        other => panic!("expected API_KEY, got {}", other.type_name()),
    }
}

#[tokio::test]
async fn sessions_are_created_read_and_deleted() {
    let s = setup().await;
    let (status, answer) = s
        .post(
            "/connect/sessions",
            As::Key(&s.key),
            json!({
                "end_user": {"id": "u1", "email": "u1@example.com", "display_name": "U One",
                             "tags": {"Plan": "pro"}},
                "organization": {"id": "org1", "display_name": "Org One"},
                "allowed_integrations": ["keys", "mock"],
                "integrations_config_defaults": {
                    "mock": {"authorization_params": {"prompt": "consent"},
                             "connection_config": {"team": "t1"}}
                },
                "tags": {"source": "tests"},
            }),
        )
        .await;
    assert_eq!(status, 201, "{answer}");
    let token = answer["data"]["token"].as_str().unwrap();
    let hex = token
        .strip_prefix("nango_connect_session_")
        .expect("Nango's prefix");
    assert!(
        hex.len() == 64 && hex.chars().all(|c| c.is_ascii_hexdigit()),
        "{token}"
    );
    let expires_at: chrono::DateTime<Utc> = answer["data"]["expires_at"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let left = expires_at - Utc::now();
    assert!(
        left > Duration::minutes(29) && left <= Duration::minutes(30),
        "{left}"
    );

    // Only the token's digest is stored.
    let (stored, plain): (i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE token_hash = $1),
                count(*) FILTER (WHERE row_to_json(s)::text LIKE '%' || $2 || '%')
         FROM connect_sessions s",
    )
    .bind(token_digest(token))
    .bind(hex)
    .fetch_one(&s.ctx.db)
    .await
    .unwrap();
    assert_eq!((stored, plain), (1, 0));

    let (status, session) = s
        .call(
            reqwest::Method::GET,
            "/connect/session",
            As::Session(token),
            None,
        )
        .await;
    assert_eq!(status, 200, "{session}");
    let data = &session["data"];
    assert_eq!(data["endUser"]["id"], "u1");
    assert_eq!(data["endUser"]["email"], "u1@example.com");
    assert_eq!(data["endUser"]["organization"]["id"], "org1");
    assert_eq!(data["allowed_integrations"], json!(["keys", "mock"]));
    assert_eq!(
        data["integrations_config_defaults"]["mock"]["authorization_params"]["prompt"],
        "consent"
    );
    assert_eq!(data["tags"]["end_user_id"], "u1");
    assert_eq!(data["tags"]["organization_id"], "org1");
    assert_eq!(
        data["tags"]["plan"], "pro",
        "end user tag keys are lower-cased"
    );
    assert_eq!(data["tags"]["source"], "tests");
    assert!(data.get("isReconnecting").is_none());

    // The session endpoint takes the session token only.
    for who in [
        As::Key(&s.key),
        As::Nobody,
        As::Session("nango_connect_session_00"),
    ] {
        let (status, _) = s
            .call(reqwest::Method::GET, "/connect/session", who, None)
            .await;
        assert_eq!(status, 401);
    }

    let (status, _) = s
        .call(
            reqwest::Method::DELETE,
            "/connect/session",
            As::Session(token),
            None,
        )
        .await;
    assert_eq!(status, 204);
    let (status, body) = s
        .call(
            reqwest::Method::GET,
            "/connect/session",
            As::Session(token),
            None,
        )
        .await;
    assert_eq!(status, 401, "{body}");
    let (status, _) = s
        .post(
            "/api-auth/api-key/keys",
            As::Session(token),
            json!({"apiKey": "k"}),
        )
        .await;
    assert_eq!(status, 401);
    assert_eq!(s.connection_count().await, 0);
}

#[tokio::test]
async fn a_session_token_stands_in_for_the_secret_key_on_every_auth_endpoint() {
    let s = setup().await;
    let token = s
        .new_session(json!({
            "end_user": {"id": "u1", "email": "u1@example.com"},
            "organization": {"id": "org1"},
            "allowed_integrations": ["keys", "mock"],
            "integrations_config_defaults": {
                "mock": {"authorization_params": {"prompt": "consent"},
                         "connection_config": {"team": "t1"}}
            },
        }))
        .await;

    // API key, with the token in the query (as Nango's frontend SDK sends it) or as Bearer.
    let (status, body) = s
        .post(
            &format!("/api-auth/api-key/keys?connect_session_token={token}"),
            As::Nobody,
            json!({"apiKey": "k1"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let id = body["connectionId"].as_str().unwrap().to_string();
    assert!(
        uuid::Uuid::parse_str(&id).is_ok(),
        "the session chooses the id: {id}"
    );
    let c = s.connection(s.env.id, "keys", &id).await.unwrap();
    assert_eq!(api_key_of(&c), "k1");
    let user = c.end_user.as_ref().expect("the session's end user");
    assert_eq!(user.id, "u1");
    assert_eq!(user.organization.as_ref().unwrap().id, "org1");
    assert_eq!(c.tags["end_user_id"], "u1");
    let (status, body) = s
        .post(
            "/api-auth/api-key/keys",
            As::Session(&token),
            json!({"apiKey": "k2"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_ne!(body["connectionId"], id.as_str());

    // A session names the connection itself, and only connects what it allows.
    let (status, body) = s
        .post(
            "/api-auth/api-key/keys?connection_id=mine",
            As::Session(&token),
            json!({"apiKey": "k"}),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(
        body["error"]["errors"][0]["field"], "connection_id",
        "{body}"
    );
    for integration in ["other-keys", "does-not-exist"] {
        let (status, body) = s
            .post(
                &format!("/api-auth/api-key/{integration}"),
                As::Session(&token),
                json!({"apiKey": "k"}),
            )
            .await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["error"]["code"], "integration_not_allowed");
    }
    let (status, body) = s
        .post("/oauth2/auth/other-keys", As::Session(&token), json!({}))
        .await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (400, &json!("integration_not_allowed"))
    );
    assert_eq!(s.connection_count().await, 2);

    // OAuth: a browser with only the token; the session's defaults apply.
    let (authorize, status, page) = s.oauth_with_session("mock", &token).await;
    assert!(authorize.contains("prompt=consent"), "{authorize}");
    assert_eq!(status, 200, "{page}");
    let oauth_id: String = sqlx::query_scalar(
        "SELECT c.connection_id FROM connections c JOIN integrations i ON i.id = c.integration_id
         WHERE i.unique_key = 'mock'",
    )
    .fetch_one(&s.ctx.db)
    .await
    .unwrap();
    let c = s.connection(s.env.id, "mock", &oauth_id).await.unwrap();
    assert!(matches!(c.credentials, Credentials::OAuth2(_)));
    assert_eq!(c.end_user.as_ref().unwrap().id, "u1");
    assert_eq!(c.connection_config["team"], "t1");
    let hook = eventually(
        "the OAuth webhook",
        std::time::Duration::from_secs(5),
        || async {
            s.hooks
                .bodies()
                .into_iter()
                .find(|b| b["providerConfigKey"] == "mock")
        },
    )
    .await;
    assert_eq!(hook["endUser"]["endUserId"], "u1");
    assert_eq!(hook["endUser"]["organizationId"], "org1");
    assert_eq!(hook["tags"]["end_user_id"], "u1");

    // The end user cannot set what the provider fills in (it decides where tokens are sent).
    let res = browser()
        .get(format!(
            "{}/oauth/connect/mock?connect_session_token={token}&params[instance_url]=https://evil.example",
            s.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);

    // An expired token is refused everywhere.
    sqlx::query("UPDATE connect_sessions SET expires_at = now() - interval '1 second'")
        .execute(&s.ctx.db)
        .await
        .unwrap();
    let (status, body) = s
        .post(
            "/api-auth/api-key/keys",
            As::Session(&token),
            json!({"apiKey": "k3"}),
        )
        .await;
    assert_eq!(status, 401, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("expired"),
        "{body}"
    );
    let (status, _) = s
        .call(
            reqwest::Method::GET,
            "/connect/session",
            As::Session(&token),
            None,
        )
        .await;
    assert_eq!(status, 401);
    let res = browser()
        .get(format!(
            "{}/oauth/connect/mock?connect_session_token={token}",
            s.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(s.connection_count().await, 3);
}

#[tokio::test]
async fn reconnect_sessions_reauthorize_only_their_connection() {
    let s = setup().await;
    for (id, k) in [("acct-1", "old"), ("acct-2", "other")] {
        let (status, body) = s
            .post(
                &format!("/api-auth/api-key/keys?connection_id={id}"),
                As::Key(&s.key),
                json!({"apiKey": k}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, answer) = s
        .post(
            "/connect/sessions/reconnect",
            As::Key(&s.key),
            json!({"connection_id": "acct-1", "integration_id": "keys", "end_user": {"id": "u1"}}),
        )
        .await;
    assert_eq!(status, 201, "{answer}");
    let token = answer["data"]["token"].as_str().unwrap().to_string();
    let (_, session) = s
        .call(
            reqwest::Method::GET,
            "/connect/session",
            As::Session(&token),
            None,
        )
        .await;
    assert_eq!(session["data"]["isReconnecting"], true);
    assert_eq!(session["data"]["allowed_integrations"], json!(["keys"]));

    let (status, body) = s
        .post(
            "/api-auth/api-key/keys",
            As::Session(&token),
            json!({"apiKey": "new"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["connectionId"], "acct-1");
    assert_eq!(
        api_key_of(&s.connection(s.env.id, "keys", "acct-1").await.unwrap()),
        "new"
    );
    assert_eq!(
        api_key_of(&s.connection(s.env.id, "keys", "acct-2").await.unwrap()),
        "other"
    );
    assert_eq!(s.connection_count().await, 2);
    let hook = eventually(
        "the override webhook",
        std::time::Duration::from_secs(5),
        || async {
            s.hooks
                .bodies()
                .into_iter()
                .find(|b| b["operation"] == "override")
        },
    )
    .await;
    assert_eq!(hook["connectionId"], "acct-1");

    let (status, body) = s
        .post(
            "/api-auth/api-key/other-keys",
            As::Session(&token),
            json!({"apiKey": "x"}),
        )
        .await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (400, &json!("integration_not_allowed"))
    );

    // An OAuth connection re-authorized through the browser keeps its id.
    let res = browser()
        .get(format!("{}/oauth/connect/mock?connection_id=o-1", s.base))
        .bearer_auth(&s.key)
        .send()
        .await
        .unwrap();
    let authorize = res.headers()["location"].to_str().unwrap().to_string();
    let callback = browser().get(&authorize).send().await.unwrap().headers()["location"]
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(browser().get(&callback).send().await.unwrap().status(), 200);
    let before = s.connection(s.env.id, "mock", "o-1").await.unwrap();
    let (status, answer) = s
        .post(
            "/connect/sessions/reconnect",
            As::Key(&s.key),
            json!({"connection_id": "o-1", "integration_id": "mock"}),
        )
        .await;
    assert_eq!(status, 201, "{answer}");
    let (_, status, page) = s
        .oauth_with_session("mock", answer["data"]["token"].as_str().unwrap())
        .await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("o-1"), "{page}");
    let after = s.connection(s.env.id, "mock", "o-1").await.unwrap();
    assert!(after.updated_at > before.updated_at);
    assert_eq!(s.connection_count().await, 3);
    assert_eq!(s.mock.token_requests().len(), 2);

    // Reconnecting what does not exist (here) is refused.
    for (id, integration) in [
        ("nope", "keys"),
        ("acct-1", "other-keys"),
        ("acct-1", "nope"),
    ] {
        let (status, body) = s
            .post(
                "/connect/sessions/reconnect",
                As::Key(&s.key),
                json!({"connection_id": id, "integration_id": integration}),
            )
            .await;
        assert_eq!(status, 404, "{body}");
        assert_eq!(body["error"]["code"], "unknown_connection");
    }
}

#[tokio::test]
async fn bad_session_requests_are_refused_naming_the_field() {
    let s = setup().await;
    let cases: Vec<(Value, &str)> = vec![
        (json!({}), "end_user"),
        (json!({"end_user": {"id": ""}}), "end_user.id"),
        (
            json!({"end_user": {"id": "u", "email": "not-an-email"}}),
            "end_user.email",
        ),
        (
            json!({"end_user": {"id": "u"}, "allowed_integrations": ["keys", "nope"]}),
            "allowed_integrations[1]",
        ),
        (
            json!({"end_user": {"id": "u"}, "integrations_config_defaults": {"nope": {}}}),
            "integrations_config_defaults.nope",
        ),
        (
            json!({"end_user": {"id": "u"}, "webhook_url_override": "ftp://x"}),
            "webhook_url_override",
        ),
    ];
    for (body, field) in cases {
        let (status, answer) = s
            .post("/connect/sessions", As::Key(&s.key), body.clone())
            .await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(
            answer["error"]["errors"][0]["field"], field,
            "{body}: {answer}"
        );
    }
    for body in [
        json!({"end_user": {"id": "u"}, "unknown": 1}),
        json!({"end_user": {"id": "u", "tags": {"a": 1}}}),
        json!({"end_user": {"id": "u"}, "integrations_config_defaults": {"keys": {"bogus": 1}}}),
        json!({"end_user": "u"}),
    ] {
        let (status, answer) = s
            .post("/connect/sessions", As::Key(&s.key), body.clone())
            .await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(answer["error"]["code"], "invalid_body", "{body}: {answer}");
    }
    let (status, _) = s
        .post(
            "/connect/sessions",
            As::Nobody,
            json!({"end_user": {"id": "u"}}),
        )
        .await;
    assert_eq!(status, 401);
    let (status, body) = s
        .post(
            "/connect/sessions/reconnect",
            As::Key(&s.key),
            json!({"connection_id": "x"}),
        )
        .await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (400, &json!("invalid_body"))
    );
    // Tags alone may stand in for the end user (Nango).
    let (status, _) = s
        .post(
            "/connect/sessions",
            As::Key(&s.key),
            json!({"tags": {"team": "a"}}),
        )
        .await;
    assert_eq!(status, 201);
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM connect_sessions")
        .fetch_one(&s.ctx.db)
        .await
        .unwrap();
    assert_eq!(count, 1);
}

#[tokio::test]
async fn an_environment_cannot_reach_another() {
    let s = setup().await;
    // B's connection, made with B's key.
    let (status, body) = s
        .post(
            "/api-auth/api-key/b-keys?connection_id=b-1",
            As::Key(&s.key_b),
            json!({"apiKey": "b-secret"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    // A's key does not find B's integration anywhere.
    for (path, body) in [
        (
            "/api-auth/api-key/b-keys?connection_id=b-1",
            json!({"apiKey": "taken"}),
        ),
        (
            "/api-auth/basic/b-keys?connection_id=b-1",
            json!({"username": "u", "password": "p"}),
        ),
        (
            "/oauth2/auth/b-keys?connection_id=b-1",
            json!({"client_id": "a", "client_secret": "b"}),
        ),
    ] {
        let (status, answer) = s.post(path, As::Key(&s.key), body).await;
        assert_eq!(status, 404, "{path}: {answer}");
        assert_eq!(answer["error"]["code"], "unknown_provider_config");
    }
    let (status, answer) = s
        .call(
            reqwest::Method::GET,
            "/oauth/connect/b-keys?connection_id=b-1",
            As::Key(&s.key),
            None,
        )
        .await;
    assert_eq!(status, 404, "{answer}");
    let (status, _) = s
        .post(
            "/connect/sessions",
            As::Key(&s.key),
            json!({"end_user": {"id": "u"}, "allowed_integrations": ["b-keys"]}),
        )
        .await;
    assert_eq!(status, 400);
    let (status, _) = s
        .post(
            "/connect/sessions/reconnect",
            As::Key(&s.key),
            json!({"connection_id": "b-1", "integration_id": "b-keys"}),
        )
        .await;
    assert_eq!(status, 404);

    // A session of A cannot touch B, nor a session of B touch A.
    let token_a = s.new_session(json!({"end_user": {"id": "ua"}})).await;
    let (status, answer) = s
        .post(
            "/api-auth/api-key/b-keys",
            As::Session(&token_a),
            json!({"apiKey": "x"}),
        )
        .await;
    assert_eq!(
        (status, &answer["error"]["code"]),
        (404, &json!("unknown_provider_config"))
    );
    let (status, answer) = s
        .post(
            "/connect/sessions",
            As::Key(&s.key_b),
            json!({"end_user": {"id": "ub"}}),
        )
        .await;
    assert_eq!(status, 201);
    let token_b = answer["data"]["token"].as_str().unwrap();
    for integration in ["keys", "mock"] {
        let (status, _) = s
            .post(
                &format!("/api-auth/api-key/{integration}"),
                As::Session(token_b),
                json!({"apiKey": "x"}),
            )
            .await;
        assert_eq!(status, 404, "{integration}");
    }
    let res = browser()
        .get(format!(
            "{}/oauth/connect/mock?connect_session_token={token_b}",
            s.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    let (_, session) = s
        .call(
            reqwest::Method::GET,
            "/connect/session",
            As::Session(token_b),
            None,
        )
        .await;
    assert_eq!(session["data"]["endUser"]["id"], "ub");

    // B's connection is as B left it, and A has none.
    let b1 = s.connection(s.env_b.id, "b-keys", "b-1").await.unwrap();
    assert_eq!(api_key_of(&b1), "b-secret");
    assert!(b1.end_user.is_none());
    assert!(s.connection(s.env.id, "b-keys", "b-1").await.is_none());
    assert_eq!(s.connection_count().await, 1);
    let oauth_sessions: i64 = sqlx::query_scalar("SELECT count(*) FROM oauth_sessions")
        .fetch_one(&s.ctx.db)
        .await
        .unwrap();
    assert_eq!(oauth_sessions, 0);
}

#[tokio::test]
async fn long_expired_sessions_are_purged_by_the_scheduler() {
    let s = setup().await;
    let old = s.new_session(json!({"end_user": {"id": "old"}})).await;
    let recent = s.new_session(json!({"end_user": {"id": "recent"}})).await;
    let live = s.new_session(json!({"end_user": {"id": "live"}})).await;
    for (token, ago) in [(&old, "2 hours"), (&recent, "1 minute")] {
        sqlx::query(
            "UPDATE connect_sessions SET expires_at = now() - $2::interval WHERE token_hash = $1",
        )
        .bind(token_digest(token))
        .bind(ago)
        .execute(&s.ctx.db)
        .await
        .unwrap();
    }
    let res = browser()
        .get(format!("{}/oauth/connect/mock", s.base))
        .bearer_auth(&s.key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 302);
    sqlx::query("UPDATE oauth_sessions SET expires_at = now() - interval '2 hours'")
        .execute(&s.ctx.db)
        .await
        .unwrap();
    lasso_services::scheduler::tick(&s.ctx).await.unwrap();
    let oauth_sessions: i64 = sqlx::query_scalar("SELECT count(*) FROM oauth_sessions")
        .fetch_one(&s.ctx.db)
        .await
        .unwrap();
    assert_eq!(oauth_sessions, 0);
    let left: Vec<Vec<u8>> = sqlx::query_scalar("SELECT token_hash FROM connect_sessions")
        .fetch_all(&s.ctx.db)
        .await
        .unwrap();
    assert!(!left.contains(&token_digest(&old)));
    assert!(left.contains(&token_digest(&recent)) && left.contains(&token_digest(&live)));
}

/// Runs `script` (an ES module body) with Nango's Node client imported as `Nango`, against the
/// api at `host` with `key`; returns what it prints, as JSON.
async fn with_nango_client(host: &str, key: &str, script: &str) -> Value {
    let module = node_modules().join("@nangohq/node/dist/index.js");
    assert!(
        module.is_file(),
        "{} missing; run `scripts/bootstrap --with-node`",
        module.display()
    );
    let program = format!(
        "const {{ Nango }} = await import(process.env.NANGO_MODULE);\n\
         const nango = new Nango({{ secretKey: process.env.LASSO_KEY, host: process.env.LASSO_HOST }});\n\
         {script}"
    );
    let out = tokio::process::Command::new("node")
        .args(["--input-type=module", "-e", &program])
        .env("NANGO_MODULE", &module)
        .env("LASSO_HOST", host)
        .env("LASSO_KEY", key)
        .kill_on_drop(true)
        .output()
        .await
        .expect("run node");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test]
async fn nangos_node_client_creates_sessions() {
    let s = setup().await;
    let (status, _) = s
        .post(
            "/api-auth/api-key/keys?connection_id=acct-1",
            As::Key(&s.key),
            json!({"apiKey": "k"}),
        )
        .await;
    assert_eq!(status, 200);
    let out = with_nango_client(
        &s.base,
        &s.key,
        "const session = await nango.createConnectSession({
             end_user: { id: 'node-user', email: 'node@example.com' },
             allowed_integrations: ['keys'],
         });
         const reconnect = await nango.createReconnectSession({ connection_id: 'acct-1', integration_id: 'keys' });
         console.log(JSON.stringify({ session, reconnect }));",
    )
    .await;
    let token = out["session"]["data"]["token"].as_str().unwrap();
    let (status, session) = s
        .call(
            reqwest::Method::GET,
            "/connect/session",
            As::Session(token),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(session["data"]["endUser"]["id"], "node-user");
    let token = out["reconnect"]["data"]["token"].as_str().unwrap();
    let (status, body) = s
        .post(
            "/api-auth/api-key/keys",
            As::Session(token),
            json!({"apiKey": "k2"}),
        )
        .await;
    assert_eq!((status, &body["connectionId"]), (200, &json!("acct-1")));
}

#[tokio::test]
async fn request_logs_carry_no_session_token_or_oauth_code() {
    let logs = captured_logs();
    let s = setup().await;
    let token = s
        .new_session(json!({"end_user": {"id": "u-logs"}, "allowed_integrations": ["mock"]}))
        .await;
    let res = browser()
        .get(format!(
            "{}/oauth/connect/mock?connect_session_token={token}",
            s.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 302);
    let authorize = res.headers()["location"].to_str().unwrap().to_string();
    let res = browser().get(&authorize).send().await.unwrap();
    let callback = url::Url::parse(res.headers()["location"].to_str().unwrap()).unwrap();
    let param = |name: &str| {
        callback
            .query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
            .unwrap_or_else(|| panic!("the callback has no {name}"))
    };
    let (code, state) = (param("code"), param("state"));
    let res = browser().get(callback.as_str()).send().await.unwrap();
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());

    let logged = logs.text();
    assert!(
        logged.contains("/oauth/connect/mock") && logged.contains("/oauth/callback"),
        "the api's request logs are captured"
    );
    for (what, secret) in [
        ("connect session token", &token),
        ("code", &code),
        ("state", &state),
    ] {
        assert!(!logged.contains(secret.as_str()), "the {what} was logged");
    }
}
