//! The provider catalog: Nango's published catalog loads whole, ours covers the common auth
//! modes, and `GET /providers`, `GET /providers/:provider` answer over real HTTP.

use std::collections::BTreeSet;
use std::path::PathBuf;

use lasso_services::environments;
use lasso_services::providers::{AuthMode, Catalog};
use lasso_tests::*;
use serde_json::Value;

/// Nango's `providers.yaml`, installed from npm (`@nangohq/providers`) by
/// `scripts/bootstrap --with-node`; never committed here.
fn nango_catalog_path() -> PathBuf {
    node_modules().join("@nangohq/providers/providers.yaml")
}

#[test]
fn nangos_published_catalog_parses_entirely() {
    let path = nango_catalog_path();
    let yaml = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read Nango's catalog at {} ({e}); run `scripts/bootstrap --with-node` first",
            path.display()
        )
    });
    // Every problem is in the one error, so a failure lists every entry that does not parse.
    let catalog = Catalog::from_yaml(&path.display().to_string(), &yaml)
        .unwrap_or_else(|e| panic!("Nango's catalog does not load: {e}"));
    assert!(
        (500..5000).contains(&catalog.len()),
        "expected hundreds of providers, got {}",
        catalog.len()
    );

    // Spot checks that the typed fields hold what the file says.
    let github = catalog.get("github").expect("github");
    assert_eq!(github.auth_mode, AuthMode::OAuth2);
    assert_eq!(
        github.resolved_token_url(),
        Some("https://github.com/login/oauth/access_token")
    );
    let proxy = github.proxy.as_ref().expect("github proxy");
    assert_eq!(proxy.base_url, "https://api.github.com");
    assert!(!proxy.retry.as_ref().expect("github retry").at.is_empty());
    assert!(proxy.paginate.is_some());
    let zendesk = catalog.get("zendesk").expect("zendesk");
    assert!(
        zendesk
            .proxy
            .as_ref()
            .unwrap()
            .base_url
            .contains("${connectionConfig.subdomain}")
    );
    assert!(zendesk.connection_config.contains_key("subdomain"));

    // Aliases are resolved: an alias entry carries its target's auth settings.
    for (alias, target) in [
        ("google-calendar", "google"),
        ("microsoft-teams", "microsoft"),
    ] {
        let (alias_entry, target_entry) =
            (catalog.get(alias).unwrap(), catalog.get(target).unwrap());
        assert_ne!(alias_entry.display_name, target_entry.display_name);
        assert_eq!(alias_entry.auth_mode, target_entry.auth_mode, "{alias}");
        assert_eq!(
            alias_entry.authorization_url, target_entry.authorization_url,
            "{alias}"
        );
        assert_eq!(alias_entry.token_url, target_entry.token_url, "{alias}");
    }
    let modes: BTreeSet<&str> = catalog.list().map(|(_, p)| p.auth_mode.as_str()).collect();
    for mode in ["OAUTH2", "OAUTH2_CC", "API_KEY", "BASIC"] {
        assert!(modes.contains(mode), "{mode} missing from {modes:?}");
    }
    let unknown: Vec<String> = catalog
        .list()
        .filter(|(_, p)| matches!(p.auth_mode, AuthMode::Other(_)))
        .map(|(n, p)| format!("{n}: {}", p.auth_mode))
        .collect();
    assert!(
        unknown.is_empty(),
        "auth modes without a variant: {unknown:?}"
    );
}

#[test]
fn builtin_catalog_covers_the_common_auth_modes() {
    let catalog = Catalog::builtin();
    assert!(
        catalog.len() >= 25,
        "only {} builtin providers",
        catalog.len()
    );
    for mode in [
        AuthMode::OAuth2,
        AuthMode::OAuth2Cc,
        AuthMode::ApiKey,
        AuthMode::Basic,
    ] {
        let n = catalog.list().filter(|(_, p)| p.auth_mode == mode).count();
        assert!(n >= 2, "only {n} builtin providers use {mode}");
    }
    for (name, p) in catalog.list() {
        let proxy = p
            .proxy
            .as_ref()
            .unwrap_or_else(|| panic!("{name} has no proxy"));
        assert!(
            proxy.base_url.starts_with("https://")
                || proxy.base_url.starts_with("${connectionConfig."),
            "{name}: {}",
            proxy.base_url
        );
        assert!(p.docs.is_some(), "{name} has no docs");
        assert!(!p.categories.is_empty(), "{name} has no categories");
        if matches!(p.auth_mode, AuthMode::OAuth2) {
            assert!(p.authorization_url.is_some(), "{name}: authorization_url");
            assert!(p.resolved_token_url().is_some(), "{name}: token_url");
        }
        if matches!(p.auth_mode, AuthMode::OAuth2Cc) {
            assert!(p.resolved_token_url().is_some(), "{name}: token_url");
        }
    }
    let templated = catalog
        .list()
        .filter(|(_, p)| {
            p.proxy
                .as_ref()
                .is_some_and(|x| x.base_url.contains("${connectionConfig."))
        })
        .count();
    assert!(templated >= 3, "only {templated} templated base URLs");
}

async fn api_with_key() -> (String, String) {
    let db = fresh_database().await;
    let ctx = local_context(&db).await;
    let (_, key) = environments::create(&ctx.db, "providers").await.unwrap();
    (serve_api(ctx).await, key)
}

#[tokio::test]
async fn list_providers_over_http() {
    let (base, key) = api_with_key().await;
    let client = reqwest::Client::new();

    let res = client
        .get(format!("{base}/providers"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    let data = body["data"].as_array().expect("data is a list");
    assert_eq!(data.len(), Catalog::builtin().len());
    let names: Vec<&str> = data.iter().map(|p| p["name"].as_str().unwrap()).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
    let github = data.iter().find(|p| p["name"] == "github").expect("github");
    assert_eq!(github["display_name"], "GitHub");
    assert_eq!(github["auth_mode"], "OAUTH2");
    assert_eq!(
        github["logo_url"],
        "https://app.nango.dev/images/template-logos/github.svg"
    );
    assert_eq!(github["proxy"]["base_url"], "https://api.github.com");

    // `search` matches the name or the display name, ignoring case.
    let res = client
        .get(format!("{base}/providers?search=HubS"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    let body: Value = res.json().await.unwrap();
    let names: Vec<&str> = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["hubspot"]);
    let res = client
        .get(format!("{base}/providers?search=Google%20Calendar"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["data"][0]["name"], "google-calendar");
    assert_eq!(body["data"].as_array().unwrap().len(), 1);

    for auth in [None, Some("Bearer nope")] {
        let mut req = client.get(format!("{base}/providers"));
        if let Some(h) = auth {
            req = req.header("Authorization", h);
        }
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), 401, "{auth:?}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["error"]["code"], "unauthorized");
    }
}

#[tokio::test]
async fn get_one_provider_over_http() {
    let (base, key) = api_with_key().await;
    let client = reqwest::Client::new();

    let res = client
        .get(format!("{base}/providers/zendesk"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    let data = &body["data"];
    assert_eq!(data["name"], "zendesk");
    assert_eq!(data["auth_mode"], "OAUTH2");
    assert!(
        data["proxy"]["base_url"]
            .as_str()
            .unwrap()
            .contains("${connectionConfig.subdomain}")
    );
    assert_eq!(data["connection_config"]["subdomain"]["type"], "string");
    assert!(data["categories"].as_array().is_some_and(|c| !c.is_empty()));
    assert!(data["docs"].as_str().is_some());

    // An alias answers with its target's settings under its own name.
    let res = client
        .get(format!("{base}/providers/google-calendar"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    let data = &res.json::<Value>().await.unwrap()["data"];
    assert_eq!(data["name"], "google-calendar");
    assert_eq!(
        data["authorization_url"],
        "https://accounts.google.com/o/oauth2/v2/auth"
    );
    assert!(data.get("alias").is_none());

    let res = client
        .get(format!("{base}/providers/no-such-provider"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unknown_provider");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no-such-provider")
    );

    let res = client
        .get(format!("{base}/providers/github"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
}

#[tokio::test]
async fn a_deployment_file_extends_the_catalog() {
    let dir = temp_dir("lasso-providers");
    let file = dir.join("providers.yaml");
    std::fs::write(
        &file,
        r#"
internal-crm:
    display_name: Internal CRM
    auth_mode: API_KEY
    categories: [crm]
    docs: https://crm.example.com/docs
    proxy:
        base_url: https://crm.example.com/api
        headers:
            x-api-key: ${apiKey}
github:
    alias: github
    display_name: GitHub Enterprise
    proxy:
        base_url: https://${connectionConfig.host}/api/v3
"#,
    )
    .unwrap();
    let db = fresh_database().await;
    let cfg = config(&db, &[("LASSO_PROVIDERS_FILE", file.display().to_string())]);
    let ctx = lasso_services::Context::build(cfg, None).expect("context with an extra catalog");
    assert_eq!(ctx.providers.len(), Catalog::builtin().len() + 1);
    let (_, key) = environments::create(&ctx.db, "providers").await.unwrap();
    let base = serve_api(ctx).await;
    let client = reqwest::Client::new();
    let res = client
        .get(format!("{base}/providers/internal-crm"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let data = &res.json::<Value>().await.unwrap()["data"];
    assert_eq!(data["proxy"]["headers"]["x-api-key"], "${apiKey}");
    let res = client
        .get(format!("{base}/providers/github"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    let data = &res.json::<Value>().await.unwrap()["data"];
    assert_eq!(data["display_name"], "GitHub Enterprise");
    assert_eq!(
        data["proxy"]["base_url"],
        "https://${connectionConfig.host}/api/v3"
    );
    assert_eq!(
        data["token_url"],
        "https://github.com/login/oauth/access_token"
    );

    // A bad file stops start-up, naming the file, the entry and the field.
    std::fs::write(
        &file,
        "broken:\n    display_name: Broken\n    auth_mode: BASIC\n    proxy:\n        headers: {}\n",
    )
    .unwrap();
    let cfg = config(&db, &[("LASSO_PROVIDERS_FILE", file.display().to_string())]);
    let err = lasso_services::Context::build(cfg, None)
        .err()
        .expect("a bad catalog stops start-up")
        .to_string();
    for part in [
        file.display().to_string().as_str(),
        "`broken`",
        "line 1",
        "proxy",
        "base_url",
    ] {
        assert!(err.contains(part), "{err:?} lacks {part:?}");
    }
}
