//! `lasso keys rotate`: with a new `LASSO_ENCRYPTION_KEY` and the old one in
//! `LASSO_PREVIOUS_ENCRYPTION_KEYS`, every stored secret (connection credentials and secret
//! config fields, integrations' client and webhook secrets, environment variables, the
//! environment's webhook signing secret) is re-sealed under the new key; everything stays
//! readable while it runs, an interrupted run resumes where it stopped, and afterwards the old
//! key is no longer needed.

use lasso_services::EnvironmentId;
use lasso_services::environments::{self, EnvironmentVariable};
use lasso_services::{Context, connections, integrations};
use lasso_tests::*;
use serde_json::json;

const NEW_KEY: &str = "ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA=";

const CATALOG: &str = "vaulty:\n  display_name: Vaulty\n  auth_mode: API_KEY\n  connection_config:\n    private_key:\n      type: string\n      secret: true\n";

fn context(db: &TestDb, keys: &[(&str, String)]) -> Context {
    let mut settings = vec![(
        "LASSO_PROVIDERS_FILE",
        providers_file(CATALOG).display().to_string(),
    )];
    settings.extend(keys.iter().cloned());
    Context::build(config(db, &settings), None).unwrap()
}

/// Reads every secret back through `ctx`'s cipher.
async fn read_all(ctx: &Context, env: EnvironmentId) -> Result<Vec<String>, lasso_services::Error> {
    use secrecy::ExposeSecret;
    let mut out = Vec::new();
    for id in ["c1", "c2", "c3"] {
        let c = connections::get(&ctx.db, &ctx.cipher, env, "vaulty", id).await?;
        out.extend(c.secrets());
    }
    let gh = integrations::get(&ctx.db, env, "gh").await?;
    out.push(
        gh.client_secret(&ctx.cipher)?
            .unwrap()
            .expose_secret()
            .to_string(),
    );
    out.push(
        gh.webhook_secret(&ctx.cipher)?
            .unwrap()
            .expose_secret()
            .to_string(),
    );
    for v in environments::variables(&ctx.db, &ctx.cipher, env).await? {
        out.push(v.value);
    }
    let hooks = environments::webhook_config(&ctx.db, &ctx.cipher, env)
        .await?
        .unwrap();
    out.push(hooks.signing_secret.expose_secret().to_string());
    out.sort();
    Ok(out)
}

#[tokio::test]
async fn keys_rotate_reseals_every_secret_and_resumes_after_an_interruption() {
    let db = fresh_database().await;
    let old = context(&db, &[]);
    let (env, key) = environments::create(&old.db, "rotation").await.unwrap();
    let api = Api::new(&serve_api(old.clone()).await, &key);
    for body in [
        json!({"provider": "vaulty", "unique_key": "vaulty"}),
        json!({"provider": "github", "unique_key": "gh",
               "credentials": {"type": "OAUTH2", "client_id": "id",
                               "client_secret": "gh_client_secret_1", "webhook_secret": "gh_whsec_1"}}),
    ] {
        let (status, body) = api.post("/integrations", body).await;
        assert_eq!(status, 200, "{body}");
    }
    for id in ["c1", "c2", "c3"] {
        let (status, body) = api
            .post(
                "/connections",
                json!({"provider_config_key": "vaulty", "connection_id": id,
                       "credentials": {"type": "API_KEY", "apiKey": format!("api_key_{id}")},
                       "connection_config": {"private_key": format!("private_{id}")}}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
    }
    environments::set_variables(
        &old.db,
        &old.cipher,
        env.id,
        &[EnvironmentVariable {
            name: "TOKEN".into(),
            value: "variable_value_1".into(),
        }],
    )
    .await
    .unwrap();
    environments::set_webhook_url(&old.db, &old.cipher, env.id, Some("https://example.com/h"))
        .await
        .unwrap();
    let before = read_all(&old, env.id).await.unwrap();
    assert_eq!(before.len(), 10, "{before:?}");

    // The new key, with the old one still decrypting.
    let rotating = context(
        &db,
        &[
            ("LASSO_ENCRYPTION_KEY", NEW_KEY.to_string()),
            (
                "LASSO_PREVIOUS_ENCRYPTION_KEYS",
                TEST_ENCRYPTION_KEY.to_string(),
            ),
        ],
    );
    assert_eq!(read_all(&rotating, env.id).await.unwrap(), before);

    // Interrupted after one value: everything still reads, with either key set.
    let first = lasso_services::keys::rotate(&rotating, Some(1))
        .await
        .unwrap();
    assert_eq!(first.resealed, 1);
    assert_eq!(read_all(&rotating, env.id).await.unwrap(), before);
    // Resumed: the rest, then nothing left to do.
    let rest = lasso_services::keys::rotate(&rotating, None).await.unwrap();
    assert_eq!(first.resealed + rest.resealed, 10, "{rest:?}");
    let again = lasso_services::keys::rotate(&rotating, None).await.unwrap();
    assert_eq!(again.resealed, 0, "{again:?}");

    // The old key is no longer needed, and no longer opens anything.
    let new_only = context(&db, &[("LASSO_ENCRYPTION_KEY", NEW_KEY.to_string())]);
    assert_eq!(read_all(&new_only, env.id).await.unwrap(), before);
    assert!(read_all(&old, env.id).await.is_err());
}
