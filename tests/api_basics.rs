//! `GET /health` and `GET /environment-variables` over real HTTP, with the contract's errors.

use lasso_services::environments::{self, EnvironmentVariable};
use lasso_tests::*;
use serde_json::{Value, json};

#[tokio::test]
async fn health_checks_the_database() {
    let db = fresh_database().await;
    let base = serve_api(local_context(&db).await).await;
    let res = reqwest::get(format!("{base}/health")).await.unwrap();
    assert_eq!(res.status(), 200);
    // Every answer names its request, for finding its log lines.
    assert_eq!(res.headers()["x-request-id"].len(), 36);
    assert_eq!(res.json::<Value>().await.unwrap()["database"], "ok");
    let res = reqwest::Client::new()
        .get(format!("{base}/health"))
        .header("x-request-id", "caller-chosen-id")
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["x-request-id"], "caller-chosen-id");

    // A database that cannot be reached makes the check fail with 503, not hang or 500.
    let mut broken = db.url.clone();
    broken = broken.replace(
        &url::Url::parse(&db.url)
            .unwrap()
            .port()
            .unwrap()
            .to_string(),
        "9",
    );
    let broken_db = TestDb {
        pool: lasso_services::db::pool_for(&broken.clone().into(), 1).unwrap(),
        url: broken,
    };
    let base = serve_api(local_context(&broken_db).await).await;
    let res = reqwest::get(format!("{base}/health")).await.unwrap();
    assert_eq!(res.status(), 503);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "database_unavailable");
}

#[tokio::test]
async fn environment_variables_need_the_environment_key() {
    let db = fresh_database().await;
    let ctx = local_context(&db).await;
    let (a, key_a) = environments::create(&ctx.db, "env-a").await.unwrap();
    let (b, key_b) = environments::create(&ctx.db, "env-b").await.unwrap();
    let vars = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(n, v)| EnvironmentVariable {
                name: n.to_string(),
                value: v.to_string(),
            })
            .collect::<Vec<_>>()
    };
    environments::set_variables(
        &ctx.db,
        &ctx.cipher,
        a.id,
        &vars(&[("API_HOST", "a.example"), ("TOKEN", "s3cr3t")]),
    )
    .await
    .unwrap();
    environments::set_variables(
        &ctx.db,
        &ctx.cipher,
        b.id,
        &vars(&[("API_HOST", "b.example")]),
    )
    .await
    .unwrap();
    let base = serve_api(ctx.clone()).await;
    let client = reqwest::Client::new();

    let res = client
        .get(format!("{base}/environment-variables"))
        .bearer_auth(&key_a)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.json::<Value>().await.unwrap(),
        json!([{"name": "API_HOST", "value": "a.example"}, {"name": "TOKEN", "value": "s3cr3t"}])
    );
    let res = client
        .get(format!("{base}/environment-variables"))
        .bearer_auth(&key_b)
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.json::<Value>().await.unwrap(),
        json!([{"name": "API_HOST", "value": "b.example"}])
    );

    for auth in [
        None,
        Some("Bearer nope"),
        Some("Basic abc"),
        Some("Bearer "),
    ] {
        let mut req = client.get(format!("{base}/environment-variables"));
        if let Some(h) = auth {
            req = req.header("Authorization", h);
        }
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), 401, "{auth:?}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["error"]["code"], "unauthorized", "{auth:?}");
        assert!(body["error"]["message"].as_str().unwrap().len() > 5);
    }

    // Values are encrypted at rest: the table does not hold the plaintext.
    let raw: Vec<(Vec<u8>,)> = sqlx::query_as("SELECT value_encrypted FROM environment_variables")
        .fetch_all(&ctx.db)
        .await
        .unwrap();
    assert!(raw.iter().all(|(v,)| !v.windows(6).any(|w| w == b"s3cr3t")));
    // Keys are stored as digests only.
    let stored: Vec<(Vec<u8>,)> = sqlx::query_as("SELECT key_hash FROM environment_keys")
        .fetch_all(&ctx.db)
        .await
        .unwrap();
    assert!(
        stored
            .iter()
            .all(|(h,)| h.len() == 32 && !key_a.as_bytes().windows(32).any(|w| w == h.as_slice()))
    );
}

#[tokio::test]
async fn unknown_routes_answer_with_the_json_error_shape() {
    let db = fresh_database().await;
    let base = serve_api(local_context(&db).await).await;
    let res = reqwest::get(format!("{base}/no/such/route")).await.unwrap();
    assert_eq!(res.status(), 404);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_found");
}
