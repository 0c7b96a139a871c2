//! Connection-config fields the catalog marks `secret` (Nango's `secret: true`, e.g. a
//! password or a private API key an end user types next to the hostname) are credentials:
//! encrypted at rest and scrubbed from logs, while the API still hands them back.

use lasso_tests::*;
use serde_json::{Value, json};

const SECRET: &str = "cfg-secret-9f8e7d6c";

fn catalog(upstream: &str) -> String {
    format!(
        "vaulty:\n  display_name: Vaulty\n  auth_mode: API_KEY\n  proxy:\n    base_url: {upstream}\n    headers:\n      authorization: Bearer ${{apiKey}}\n  connection_config:\n    region:\n      type: string\n      title: Region\n    private_key:\n      type: string\n      title: Private key\n      secret: true\n"
    )
}

#[tokio::test]
async fn secret_connection_config_fields_are_encrypted_at_rest_and_kept_out_of_logs() {
    let upstream = serve(axum::Router::new().fallback(|| async { "ok" })).await;
    let TestApp { api, db, .. } = TestApp::builder()
        .providers(&catalog(&upstream))
        .environment("vault")
        .start()
        .await;
    let (status, body) = api
        .post(
            "/integrations",
            json!({"provider": "vaulty", "unique_key": "vaulty"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = api
        .post(
            "/connections",
            json!({"provider_config_key": "vaulty", "connection_id": "c1",
                   "credentials": {"type": "API_KEY", "apiKey": "vaulty_api_key_1"},
                   "connection_config": {"region": "eu-west", "private_key": SECRET}}),
        )
        .await;
    assert_eq!(status, 201, "{body}");

    // The raw row: the secret field is not readable, the ordinary one is.
    let (raw,): (String,) = sqlx::query_as("SELECT connection_config::text FROM connections")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert!(!raw.contains(SECRET), "stored in the clear: {raw}");
    assert!(raw.contains("eu-west"), "{raw}");
    let (row,): (String,) = sqlx::query_as("SELECT row_to_json(c)::text FROM connections c")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert!(!row.contains(SECRET), "stored in the clear: {row}");

    // The API still returns it, as Nango does.
    let (status, body) = api.get("/connections/c1?provider_config_key=vaulty").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["connection_config"]["private_key"], SECRET, "{body}");
    assert_eq!(body["connection_config"]["region"], "eu-west", "{body}");

    // A re-import that changes only the ordinary field keeps the secret one.
    let (status, body) = api
        .post(
            "/connections",
            json!({"provider_config_key": "vaulty", "connection_id": "c1",
                   "credentials": {"type": "API_KEY", "apiKey": "vaulty_api_key_1"},
                   "connection_config": {"region": "us-east"}}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (_, body) = api.get("/connections/c1?provider_config_key=vaulty").await;
    assert_eq!(body["connection_config"]["private_key"], SECRET, "{body}");
    assert_eq!(body["connection_config"]["region"], "us-east", "{body}");

    // A proxy call whose endpoint carries the value: its log shows it redacted, like a token.
    let response = api
        .http
        .get(format!("{}/proxy/echo?key={SECRET}", api.base))
        .bearer_auth(&api.key)
        .header("Connection-Id", "c1")
        .header("Provider-Config-Key", "vaulty")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let (status, ops) = api.get("/logs/operations?kind=proxy").await;
    assert_eq!(status, 200, "{ops}");
    let ops = ops["data"].as_array().unwrap().clone();
    assert_eq!(ops.len(), 1, "{ops:?}");
    let (_, messages) = api
        .get(&format!(
            "/logs/operations/{}/messages",
            ops[0]["id"].as_str().unwrap()
        ))
        .await;
    let text = Value::Array(vec![Value::Array(ops), messages]).to_string();
    assert!(
        !text.contains(SECRET),
        "a secret config value was logged: {text}"
    );
    assert!(text.contains("[REDACTED]"), "{text}");
}
