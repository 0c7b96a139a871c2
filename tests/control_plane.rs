//! Integrations and connections over real HTTP: CRUD, import, list filters and paging,
//! metadata, encryption at rest, bad input, and isolation between environments.

use lasso_tests::*;
use serde_json::{Value, json};

struct Setup {
    a: Api,
    b: Api,
    db: TestDb,
}

async fn setup() -> Setup {
    let app = TestApp::builder().environment("env-a").start().await;
    let (_, b) = app.add_environment("env-b").await;
    Setup {
        a: app.api,
        b,
        db: app.db,
    }
}

fn error_code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("<none>")
}

#[tokio::test]
async fn integrations_crud() {
    let Setup { a, b, db } = setup().await;
    let (status, created) = a
        .post(
            "/integrations",
            json!({
                "provider": "github",
                "unique_key": "github-prod",
                "display_name": "GitHub",
                "credentials": {"type": "OAUTH2", "client_id": "cid", "client_secret": "csecret-123", "scopes": "repo,user"}
            }),
        )
        .await;
    assert_eq!(status, 200, "{created}");
    assert_eq!(created["data"]["unique_key"], "github-prod");
    assert_eq!(created["data"]["provider"], "github");
    assert!(created["data"].get("credentials").is_none());

    let (status, list) = a.get("/integrations").await;
    assert_eq!(status, 200);
    assert_eq!(list["data"].as_array().unwrap().len(), 1);

    let (_, with_creds) = a
        .get("/integrations/github-prod?include=credentials,webhook")
        .await;
    let creds = &with_creds["data"]["credentials"];
    assert_eq!(creds["type"], "OAUTH2");
    assert_eq!(creds["client_id"], "cid");
    assert_eq!(creds["client_secret"], "csecret-123");
    assert_eq!(creds["scopes"], "repo,user");
    assert!(
        with_creds["data"]["webhook_url"]
            .as_str()
            .unwrap()
            .contains("/webhook/")
    );

    // The client secret is encrypted at rest.
    let raw: (Option<Vec<u8>>,) =
        sqlx::query_as("SELECT client_secret_encrypted FROM integrations")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    let sealed = raw.0.unwrap();
    assert!(!sealed.windows(11).any(|w| w == b"csecret-123"));

    let (status, updated) = a
        .patch(
            "/integrations/github-prod",
            json!({"display_name": "GitHub (prod)", "unique_key": "gh"}),
        )
        .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["data"]["unique_key"], "gh");
    assert_eq!(updated["data"]["display_name"], "GitHub (prod)");
    let (status, body) = a.get("/integrations/github-prod").await;
    assert_eq!(
        (status, error_code(&body)),
        (404, "unknown_provider_config")
    );
    // Renaming keeps the secret readable (it is bound to the row, not the key).
    let (_, again) = a.get("/integrations/gh?include=credentials").await;
    assert_eq!(again["data"]["credentials"]["client_secret"], "csecret-123");

    // Environment B sees and changes nothing of A's.
    assert_eq!(b.get("/integrations").await.1["data"], json!([]));
    assert_eq!(b.get("/integrations/gh").await.0, 404);
    assert_eq!(
        b.patch("/integrations/gh", json!({"display_name": "x"}))
            .await
            .0,
        404
    );
    assert_eq!(b.delete("/integrations/gh").await.0, 404);
    // B may use the same key for its own integration.
    assert_eq!(
        b.post(
            "/integrations",
            json!({"provider": "github", "unique_key": "gh"})
        )
        .await
        .0,
        200
    );

    let (status, deleted) = a.delete("/integrations/gh").await;
    assert_eq!((status, &deleted), (200, &json!({"success": true})));
    assert_eq!(a.get("/integrations/gh").await.0, 404);
    assert_eq!(b.get("/integrations/gh").await.0, 200);
}

#[tokio::test]
async fn integrations_bad_input() {
    let Setup { a, .. } = setup().await;
    let (status, body) = a
        .post(
            "/integrations",
            json!({"provider": "no-such-provider", "unique_key": "x"}),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["errors"][0]["field"], "provider");

    let (status, body) = a.post("/integrations", json!({"unique_key": "x"})).await;
    assert_eq!((status, error_code(&body)), (400, "invalid_body"));
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("provider")
    );

    let (status, body) = a
        .post(
            "/integrations",
            json!({"provider": "github", "unique_key": "has space"}),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["errors"][0]["field"], "unique_key");

    assert_eq!(
        a.post(
            "/integrations",
            json!({"provider": "github", "unique_key": "dup"})
        )
        .await
        .0,
        200
    );
    let (status, body) = a
        .post(
            "/integrations",
            json!({"provider": "slack", "unique_key": "dup"}),
        )
        .await;
    assert_eq!((status, error_code(&body)), (409, "conflict"));
    // The conflicting create changed nothing.
    assert_eq!(
        a.get("/integrations/dup").await.1["data"]["provider"],
        "github"
    );

    let (status, _) = a.call(reqwest::Method::POST, "/integrations", None).await;
    assert_eq!(status, 400);
}

async fn import(api: &Api, key: &str, id: &str, extra: Value) -> (u16, Value) {
    let mut body = json!({
        "provider_config_key": key,
        "connection_id": id,
        "credentials": {"type": "API_KEY", "apiKey": format!("secret-{id}")},
    });
    body.as_object_mut()
        .unwrap()
        .extend(extra.as_object().cloned().unwrap_or_default());
    api.post("/connections", body).await
}

#[tokio::test]
async fn connections_import_get_list_patch_delete() {
    let Setup { a, b, db } = setup().await;
    a.post(
        "/integrations",
        json!({"provider": "openai", "unique_key": "openai"}),
    )
    .await;
    a.post(
        "/integrations",
        json!({"provider": "github", "unique_key": "github"}),
    )
    .await;

    let (status, created) = import(
        &a,
        "openai",
        "conn-1",
        json!({
            "metadata": {"team": "red"},
            "connection_config": {"region": "eu"},
            "end_user": {"id": "user-1", "email": "u1@example.com", "display_name": "User One",
                         "organization": {"id": "org-1"}},
            "tags": {"plan": "pro"}
        }),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["connection_id"], "conn-1");
    assert_eq!(created["provider"], "openai");
    assert_eq!(
        created["credentials"],
        json!({"type": "API_KEY", "apiKey": "secret-conn-1"})
    );
    assert_eq!(created["end_user"]["id"], "user-1");
    for i in 2..=5 {
        assert_eq!(
            import(&a, "openai", &format!("conn-{i}"), json!({}))
                .await
                .0,
            201
        );
    }
    let oauth = json!({"type": "OAUTH2", "access_token": "gho_abc", "refresh_token": "ghr_def",
                       "expires_at": "2099-01-01T00:00:00Z", "raw": {"access_token": "gho_abc", "refresh_token": "ghr_def"}});
    let (status, _) = a
        .post(
            "/connections",
            json!({"provider_config_key": "github", "connection_id": "gh-1", "credentials": oauth}),
        )
        .await;
    assert_eq!(status, 201);

    // Credentials are encrypted at rest.
    let sealed: Vec<(Vec<u8>,)> = sqlx::query_as("SELECT credentials_encrypted FROM connections")
        .fetch_all(&db.pool)
        .await
        .unwrap();
    assert!(
        sealed
            .iter()
            .all(|(s,)| !s.windows(7).any(|w| w == b"gho_abc" || w == b"secret-"))
    );

    // get: refresh token hidden unless asked for.
    let (status, got) = a.get("/connections/gh-1?provider_config_key=github").await;
    assert_eq!(status, 200);
    assert_eq!(got["credentials"]["access_token"], "gho_abc");
    assert!(got["credentials"].get("refresh_token").is_none());
    assert!(got["credentials"]["raw"].get("refresh_token").is_none());
    assert!(got["last_fetched_at"].is_null() || got["last_fetched_at"].is_string());
    let (_, with_refresh) = a
        .get("/connections/gh-1?provider_config_key=github&refresh_token=true")
        .await;
    assert_eq!(with_refresh["credentials"]["refresh_token"], "ghr_def");
    let (status, body) = a.get("/connections/gh-1").await;
    assert_eq!(
        (status, error_code(&body)),
        (400, "missing_provider_config_key")
    );
    let (status, body) = a.get("/connections/nope?provider_config_key=github").await;
    assert_eq!((status, error_code(&body)), (404, "not_found"));
    let (status, body) = a.get("/connections/gh-1?provider_config_key=nope").await;
    assert_eq!(
        (status, error_code(&body)),
        (404, "unknown_provider_config")
    );

    // list with filters and paging.
    let (_, all) = a.get("/connections").await;
    let all = all["connections"].as_array().unwrap().clone();
    assert_eq!(all.len(), 6);
    assert!(all.iter().all(|c| c.get("credentials").is_none()));
    let count = |v: Value| v["connections"].as_array().unwrap().len();
    assert_eq!(count(a.get("/connections?integrationId=github").await.1), 1);
    assert_eq!(
        count(a.get("/connections?integrationId=github,openai").await.1),
        6
    );
    assert_eq!(count(a.get("/connections?connectionId=conn-3").await.1), 1);
    assert_eq!(count(a.get("/connections?search=conn-").await.1), 5);
    assert_eq!(count(a.get("/connections?endUserId=user-1").await.1), 1);
    assert_eq!(
        count(a.get("/connections?endUserOrganizationId=org-1").await.1),
        1
    );
    assert_eq!(count(a.get("/connections?tags%5Bplan%5D=pro").await.1), 1);
    let mut paged = Vec::new();
    for page in 0..4 {
        let (_, p) = a.get(&format!("/connections?limit=2&page={page}")).await;
        paged.extend(
            p["connections"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["id"].clone()),
        );
    }
    assert_eq!(
        paged,
        all.iter().map(|c| c["id"].clone()).collect::<Vec<_>>()
    );
    let (status, body) = a.get("/connections?limit=0").await;
    assert_eq!(status, 400, "{body}");
    let (status, _) = a.get("/connections?limit=abc").await;
    assert_eq!(status, 400);

    // patch
    let (status, body) = a
        .patch(
            "/connections/conn-2?provider_config_key=openai",
            json!({"end_user": {"id": "user-2"}, "tags": {"plan": "free"}}),
        )
        .await;
    assert_eq!((status, &body), (200, &json!({"success": true})));
    assert_eq!(count(a.get("/connections?endUserId=user-2").await.1), 1);
    assert_eq!(
        a.patch(
            "/connections/conn-2?provider_config_key=openai",
            json!({"tags": {"n": 1}})
        )
        .await
        .0,
        400
    );

    // Environment B: nothing of A's is visible or changeable.
    assert_eq!(count(b.get("/connections").await.1), 0);
    assert_eq!(
        b.get("/connections/conn-1?provider_config_key=openai")
            .await
            .0,
        404
    );
    assert_eq!(
        b.patch(
            "/connections/conn-1?provider_config_key=openai",
            json!({"tags": {}})
        )
        .await
        .0,
        404
    );
    assert_eq!(
        b.delete("/connections/conn-1?provider_config_key=openai")
            .await
            .0,
        404
    );
    assert_eq!(import(&b, "openai", "sneaky", json!({})).await.0, 404);

    // delete
    let (status, body) = a
        .delete("/connections/conn-1?provider_config_key=openai")
        .await;
    assert_eq!((status, &body), (200, &json!({"success": true})));
    assert_eq!(
        a.get("/connections/conn-1?provider_config_key=openai")
            .await
            .0,
        404
    );
    assert_eq!(
        a.delete("/connections/conn-1?provider_config_key=openai")
            .await
            .0,
        404
    );
}

#[tokio::test]
async fn importing_again_replaces_credentials_but_keeps_metadata() {
    let Setup { a, .. } = setup().await;
    a.post(
        "/integrations",
        json!({"provider": "openai", "unique_key": "openai"}),
    )
    .await;
    import(&a, "openai", "c", json!({"metadata": {"keep": true}})).await;
    let (status, _) = a
        .post(
            "/connections",
            json!({"provider_config_key": "openai", "connection_id": "c",
                   "credentials": {"type": "API_KEY", "apiKey": "rotated"}}),
        )
        .await;
    assert_eq!(status, 201);
    let (_, got) = a.get("/connections/c?provider_config_key=openai").await;
    assert_eq!(got["credentials"]["apiKey"], "rotated");
    assert_eq!(got["metadata"], json!({"keep": true}));
}

#[tokio::test]
async fn connection_import_bad_input_creates_nothing() {
    let Setup { a, .. } = setup().await;
    a.post(
        "/integrations",
        json!({"provider": "openai", "unique_key": "openai"}),
    )
    .await;
    let cases = [
        (
            json!({"provider_config_key": "openai", "connection_id": "x", "credentials": {"type": "API_KEY"}}),
            "credentials.apiKey",
        ),
        (
            json!({"provider_config_key": "openai", "connection_id": "x", "credentials": {"type": "MAGIC"}}),
            "credentials.type",
        ),
        (
            json!({"provider_config_key": "openai", "connection_id": "x", "credentials": {"type": "API_KEY", "apiKey": "k"}, "tags": {"a": 1}}),
            "tags.a",
        ),
        (
            json!({"provider_config_key": "openai", "connection_id": "", "credentials": {"type": "API_KEY", "apiKey": "k"}}),
            "connection_id",
        ),
    ];
    for (body, field) in cases {
        let (status, answer) = a.post("/connections", body).await;
        assert_eq!(status, 400, "{answer}");
        assert_eq!(answer["error"]["errors"][0]["field"], field, "{answer}");
        // The rejected value is not echoed back.
        assert!(!answer.to_string().contains("\"k\""));
    }
    let (status, answer) = a
        .post(
            "/connections",
            json!({"provider_config_key": "openai", "credentials": "nope", "extra": 1}),
        )
        .await;
    assert_eq!((status, error_code(&answer)), (400, "invalid_body"));
    let (status, answer) = a
        .post(
            "/connections",
            json!({"provider_config_key": "missing", "connection_id": "x", "credentials": {"type": "NONE"}}),
        )
        .await;
    assert_eq!(
        (status, error_code(&answer)),
        (404, "unknown_provider_config")
    );
    assert_eq!(a.get("/connections").await.1["connections"], json!([]));
}

#[tokio::test]
async fn metadata_set_replaces_and_update_merges() {
    let Setup { a, b, .. } = setup().await;
    a.post(
        "/integrations",
        json!({"provider": "openai", "unique_key": "openai"}),
    )
    .await;
    import(&a, "openai", "m1", json!({})).await;
    import(&a, "openai", "m2", json!({})).await;

    let set = json!({"connection_id": ["m1", "m2"], "provider_config_key": "openai",
                     "metadata": {"a": 1, "b": {"c": 2}}});
    let (status, body) = a.post("/connections/metadata", set.clone()).await;
    assert_eq!((status, &body), (200, &set));
    let (status, _) = a
        .patch(
            "/connections/metadata",
            json!({"connection_id": "m1", "provider_config_key": "openai", "metadata": {"d": 4}}),
        )
        .await;
    assert_eq!(status, 200);
    let meta = |c: Value| c["metadata"].clone();
    assert_eq!(
        meta(a.get("/connections/m1?provider_config_key=openai").await.1),
        json!({"a": 1, "b": {"c": 2}, "d": 4})
    );
    a.post(
        "/connections/metadata",
        json!({"connection_id": "m2", "provider_config_key": "openai", "metadata": {"z": true}}),
    )
    .await;
    assert_eq!(
        meta(a.get("/connections/m2?provider_config_key=openai").await.1),
        json!({"z": true})
    );

    // One unknown connection: nothing is written, for any of them.
    let (status, body) = a
        .post(
            "/connections/metadata",
            json!({"connection_id": ["m1", "ghost"], "provider_config_key": "openai", "metadata": {}}),
        )
        .await;
    assert_eq!((status, error_code(&body)), (404, "unknown_connection"));
    assert_eq!(
        meta(a.get("/connections/m1?provider_config_key=openai").await.1)["d"],
        4
    );
    // Environment B cannot touch A's metadata.
    let (status, _) = b
        .post(
            "/connections/metadata",
            json!({"connection_id": "m1", "provider_config_key": "openai", "metadata": {"x": 1}}),
        )
        .await;
    assert_eq!(status, 404);
    let (status, body) = a
        .post(
            "/connections/metadata",
            json!({"connection_id": 5, "provider_config_key": "openai", "metadata": {}}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
}

#[tokio::test]
async fn every_route_needs_a_valid_key() {
    let Setup { a, .. } = setup().await;
    let anonymous = Api::new(&a.base, "lasso_sk_not-a-real-key");
    for (method, path) in [
        (reqwest::Method::GET, "/integrations"),
        (reqwest::Method::POST, "/integrations"),
        (reqwest::Method::GET, "/integrations/x"),
        (reqwest::Method::PATCH, "/integrations/x"),
        (reqwest::Method::DELETE, "/integrations/x"),
        (reqwest::Method::GET, "/connections"),
        (reqwest::Method::POST, "/connections"),
        (reqwest::Method::GET, "/connections/x?provider_config_key=y"),
        (
            reqwest::Method::PATCH,
            "/connections/x?provider_config_key=y",
        ),
        (
            reqwest::Method::DELETE,
            "/connections/x?provider_config_key=y",
        ),
        (reqwest::Method::POST, "/connections/metadata"),
        (reqwest::Method::PATCH, "/connections/metadata"),
        (reqwest::Method::GET, "/environment"),
        (reqwest::Method::PATCH, "/environment"),
        (reqwest::Method::GET, "/providers"),
    ] {
        let (status, body) = anonymous.call(method.clone(), path, Some(json!({}))).await;
        assert_eq!(
            (status, error_code(&body)),
            (401, "unauthorized"),
            "{method} {path}"
        );
    }
}
