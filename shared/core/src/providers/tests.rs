use serde_json::{Map, Value, json};

use super::*;
use crate::{Error, ErrorCode};

fn load(yaml: &str) -> Catalog {
    Catalog::from_yaml("test.yaml", yaml).unwrap_or_else(|e| panic!("{e}"))
}

fn load_err(yaml: &str) -> String {
    match Catalog::from_yaml("test.yaml", yaml) {
        Ok(_) => panic!("expected an error for:\n{yaml}"),
        Err(e) => e.to_string(),
    }
}

const BASE: &str = r#"
base:
    display_name: Base
    auth_mode: OAUTH2
    authorization_url: https://auth.example.com/authorize
    token_url: https://auth.example.com/token
    scope_separator: ','
    proxy:
        base_url: https://api.example.com
        headers:
            accept: application/json
"#;

#[test]
fn aliases_inherit_their_target_and_override_top_level_keys() {
    let catalog = load(&format!(
        "{BASE}
child:
    alias: base
    display_name: Child
    proxy:
        base_url: https://child.example.com
grandchild:
    alias: child
    display_name: Grandchild
"
    ));
    let child = catalog.get("child").unwrap();
    assert_eq!(child.display_name, "Child");
    assert_eq!(child.auth_mode, AuthMode::OAuth2);
    assert_eq!(
        child.authorization_url.as_deref(),
        Some("https://auth.example.com/authorize")
    );
    assert_eq!(child.join_scopes(&["a".into(), "b".into()]), "a,b");
    // Like Nango, an alias's `proxy` replaces the target's whole `proxy`.
    let proxy = child.proxy.as_ref().unwrap();
    assert_eq!(proxy.base_url, "https://child.example.com");
    assert!(proxy.headers.is_empty());
    assert!(!child.extra.contains_key("alias"));

    let grandchild = catalog.get("grandchild").unwrap();
    assert_eq!(grandchild.display_name, "Grandchild");
    assert_eq!(
        grandchild.proxy.as_ref().unwrap().base_url,
        "https://child.example.com"
    );
    assert_eq!(
        grandchild.resolved_token_url(),
        Some("https://auth.example.com/token")
    );
}

#[test]
fn broken_aliases_are_named() {
    let err = load_err(&format!("{BASE}\norphan:\n    alias: nowhere\n"));
    assert!(err.contains("`orphan`"), "{err}");
    assert!(err.contains("`alias`"), "{err}");
    assert!(err.contains("`nowhere`"), "{err}");

    let err = load_err("a:\n    alias: b\nb:\n    alias: a\n");
    assert!(err.contains("cycle"), "{err}");
    assert!(err.contains("a -> b -> a"), "{err}");
}

#[test]
fn anchors_and_merge_keys_are_applied() {
    let catalog = load(
        r#"
one:
    display_name: One
    auth_mode: API_KEY
    proxy: &proxy
        base_url: https://one.example.com
        headers: &headers
            x-api-key: ${apiKey}
            accept: application/json
        retry:
            after: [retry-after]
two:
    display_name: Two
    auth_mode: API_KEY
    proxy:
        <<: *proxy
        base_url: https://two.example.com
        headers:
            <<: *headers
            accept: text/csv
three:
    display_name: Three
    auth_mode: API_KEY
    proxy: *proxy
"#,
    );
    let two = catalog.get("two").unwrap().proxy.as_ref().unwrap();
    assert_eq!(two.base_url, "https://two.example.com");
    assert_eq!(two.headers["x-api-key"], "${apiKey}");
    assert_eq!(two.headers["accept"], "text/csv");
    assert_eq!(two.retry.as_ref().unwrap().after, ["retry-after"]);
    assert!(!two.extra.contains_key("<<"));
    let three = catalog.get("three").unwrap().proxy.as_ref().unwrap();
    assert_eq!(three.base_url, "https://one.example.com");
    assert_eq!(three.headers["accept"], "application/json");
}

#[test]
fn token_url_may_be_given_per_auth_mode() {
    let yaml = r#"
custom:
    display_name: Custom
    auth_mode: CUSTOM
    token_url:
        OAUTH2: https://example.com/oauth/token
        APP: https://example.com/app/token
cc:
    display_name: Client credentials
    auth_mode: OAUTH2_CC
    token_url:
        OAUTH2CC: https://example.com/cc/token
plain:
    display_name: Plain
    auth_mode: OAUTH2
    token_url: https://example.com/token
"#;
    let catalog = load(yaml);
    let custom = catalog.get("custom").unwrap();
    let Some(TokenUrl::PerMode(urls)) = &custom.token_url else {
        panic!("{:?}", custom.token_url);
    };
    assert_eq!(urls["APP"], "https://example.com/app/token");
    assert_eq!(
        custom
            .token_url
            .as_ref()
            .unwrap()
            .for_mode(&AuthMode::OAuth2),
        Some("https://example.com/oauth/token")
    );
    assert_eq!(custom.resolved_token_url(), None);
    assert_eq!(
        catalog.get("cc").unwrap().resolved_token_url(),
        Some("https://example.com/cc/token")
    );
    assert_eq!(
        catalog.get("plain").unwrap().resolved_token_url(),
        Some("https://example.com/token")
    );
}

#[test]
fn entries_round_trip_with_unknown_keys_kept() {
    // Built in two parts: one `json!` of it all is too deep for the macro.
    let proxy = json!({
        "base_url": "https://${connectionConfig.subdomain}.example.com",
        "headers": {"accept": "application/json"},
        "query": {"api_version": "2"},
        "connection_config": {"cloudId": "${connectionConfig.cloudId}"},
        "body": {"auth": {"key": "${apiKey}"}},
        "decompress": true,
        "retry": {
            "at": ["x-ratelimit-reset"], "after": ["retry-after"],
            "remaining": "x-ratelimit-remaining", "error_code": ["429"],
            "in_body": {"path": "error.message", "value": "/retry in (.+)/", "strategy": "after"}
        },
        "paginate": {
            "type": "offset", "offset_name_in_request": "start", "offset_start_value": 1,
            "offset_calculation_method": "per-page", "limit": 100,
            "limit_name_in_request": "limit", "response_path": "data", "in_body": true,
            "future_option": "kept"
        },
        "verification": {"method": "POST", "endpoints": ["/me"], "data": {"q": 1}}
    });
    let mut entry = json!({
        "display_name": "Everything",
        "auth_mode": "OAUTH2",
        "docs": "https://example.com/docs",
        "categories": ["crm"],
        "authorization_url": "https://example.com/authorize",
        "authorization_params": {"prompt": "consent", "force": true},
        "authorization_url_replacements": {"${connectionConfig.region}": "eu"},
        "authorization_code_param_in_callback": "auth_code",
        "token_url": "https://example.com/token",
        "token_params": {"expiring": 1, "body": {"nested": "x"}},
        "refresh_url": "https://example.com/refresh",
        "refresh_params": {"grant_type": "refresh_token"},
        "scope_separator": " ",
        "default_scopes": ["offline_access"],
        "disable_pkce": true,
        "token_request_auth_method": "basic",
        "authorization_method": "header",
        "body_format": "json",
        "alternate_access_token_response_path": "authed_user.access_token",
        "expires_in_unit": "milliseconds",
        "token_expiration_buffer": 300,
        "redirect_uri_metadata": ["realmId"],
        "token_response_metadata": ["instance_url"],
        "connection_config": {
            "subdomain": {
                "type": "string", "title": "Subdomain", "pattern": "^[a-z]+$",
                "order": 1, "doc_section": "#step-1", "optional": true
            }
        },
        "credentials": {
            "apiKey": {"type": "string", "title": "API key", "secret": true, "enum": ["a", "b"]}
        },
        "webhook_routing_script": "routeWebhook",
        "installation": "outbound",
    });
    entry["proxy"] = proxy;
    let yaml = format!("everything: {entry}");
    let provider = load(&yaml).get("everything").unwrap().clone();
    assert_eq!(provider.extra["webhook_routing_script"], "routeWebhook");
    let proxy = provider.proxy.as_ref().unwrap();
    assert_eq!(proxy.extra["body"], json!({"auth": {"key": "${apiKey}"}}));
    let Some(Pagination::Offset(offset)) = &proxy.paginate else {
        panic!("{:?}", proxy.paginate);
    };
    assert_eq!(offset.offset_name_in_request.as_deref(), Some("start"));
    assert_eq!(offset.page.limit, Some(PageLimit::Number(100)));
    assert_eq!(
        proxy
            .retry
            .as_ref()
            .unwrap()
            .in_body
            .as_ref()
            .unwrap()
            .strategy,
        RetryStrategy::After
    );
    assert_eq!(
        provider.token_request_auth_method,
        Some(TokenRequestAuthMethod::Basic)
    );
    assert_eq!(
        provider.connection_config["subdomain"].extra["doc_section"],
        "#step-1"
    );
    assert!(provider.credentials["apiKey"].secret);
    assert_eq!(serde_json::to_value(&provider).unwrap(), entry);
}

#[test]
fn retry_headers_may_be_one_name_or_a_list() {
    let catalog = load(
        "x:\n    display_name: X\n    auth_mode: NONE\n    proxy:\n        base_url: https://x.example.com\n        retry:\n            at: x-reset\n            after: [retry-after, x-wait]\n",
    );
    let retry = catalog
        .get("x")
        .unwrap()
        .proxy
        .as_ref()
        .unwrap()
        .retry
        .clone()
        .unwrap();
    assert_eq!(retry.at, ["x-reset"]);
    assert_eq!(retry.after, ["retry-after", "x-wait"]);
}

#[test]
fn auth_modes_keep_nangos_spelling_and_tolerate_new_ones() {
    for name in [
        "OAUTH1",
        "OAUTH2",
        "OAUTH2_CC",
        "BASIC",
        "API_KEY",
        "APP",
        "APP_STORE",
        "CUSTOM",
        "TBA",
        "JWT",
        "BILL",
        "TWO_STEP",
        "SIGNATURE",
        "AWS_SIGV4",
        "NONE",
        "MCP_OAUTH2",
        "MCP_OAUTH2_GENERIC",
        "INSTALL_PLUGIN",
    ] {
        let mode = AuthMode::parse(name);
        assert!(!matches!(mode, AuthMode::Other(_)), "{name}");
        assert_eq!(mode.as_str(), name);
    }
    let catalog = load("future:\n    display_name: Future\n    auth_mode: QUANTUM_HANDSHAKE\n");
    let future = catalog.get("future").unwrap();
    assert_eq!(
        future.auth_mode,
        AuthMode::Other("QUANTUM_HANDSHAKE".into())
    );
    assert_eq!(
        serde_json::to_value(future).unwrap()["auth_mode"],
        "QUANTUM_HANDSHAKE"
    );
}

#[test]
fn bad_entries_are_all_reported_with_key_field_and_line() {
    let err = load_err(
        r#"
good:
    display_name: Good
    auth_mode: API_KEY
wrong_type:
    display_name: Wrong
    auth_mode: API_KEY
    proxy:
        base_url: https://x.example.com
        retry:
            at: 5
no_mode:
    display_name: No mode
bad_paginate:
    display_name: Bad
    auth_mode: OAUTH2
    proxy:
        base_url: https://x.example.com
        paginate:
            type: page-number
not_a_map: 12
"#,
    );
    assert!(err.starts_with("invalid test.yaml: "), "{err}");
    assert!(!err.contains("`good`"), "{err}");
    assert!(err.contains("`wrong_type` (line 5)"), "{err}");
    assert!(
        err.contains("field `proxy.retry.at`: expected a header name or a list"),
        "{err}"
    );
    assert!(err.contains("`no_mode`"), "{err}");
    assert!(err.contains("auth_mode"), "{err}");
    assert!(err.contains("`bad_paginate`"), "{err}");
    assert!(
        err.contains("field `proxy.paginate.type`: unknown variant `page-number`"),
        "{err}"
    );
    assert!(err.contains("`not_a_map`"), "{err}");

    let err = load_err("broken:\n    display_name: [unclosed\n");
    assert!(err.contains("test.yaml"), "{err}");
    assert!(err.contains("line "), "{err}");

    let err = load_err("dup:\n    display_name: A\n    display_name: B\n    auth_mode: NONE\n");
    assert!(err.contains("line 3"), "{err}");
}

#[test]
fn yaml_1_2_scalars_stay_strings() {
    // js-yaml, Nango's loader, reads `on` and `no` as strings; so must we.
    let catalog = load("x:\n    display_name: no\n    auth_mode: NONE\n    categories: [on]\n");
    let x = catalog.get("x").unwrap();
    assert_eq!(x.display_name, "no");
    assert_eq!(x.categories, ["on"]);
}

#[test]
fn search_matches_name_or_display_name_ignoring_case() {
    let catalog = load(&format!(
        "{BASE}\nother:\n    display_name: Something Else\n    auth_mode: NONE\n"
    ));
    let names = |q: &str| catalog.search(q).map(|(n, _)| n).collect::<Vec<_>>();
    assert_eq!(names("BAS"), ["base"]);
    assert_eq!(names("thing e"), ["other"]);
    assert_eq!(names(""), ["base", "other"]);
    assert!(names("zzz").is_empty());
    assert!(
        matches!(catalog.require("zzz"), Err(Error::NotFound { code: ErrorCode::UnknownProvider, message }) if message.contains("zzz"))
    );
}

#[test]
fn a_deployment_file_goes_over_the_builtin_catalog() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("extra.yaml");
    std::fs::write(
        &file,
        r#"
github:
    alias: github
    display_name: GitHub Enterprise
    proxy:
        base_url: https://${connectionConfig.host}/api/v3
slack:
    display_name: Our Slack
    auth_mode: API_KEY
    proxy:
        base_url: https://slack.example.com
gmail-again:
    alias: google-mail
    display_name: Gmail again
"#,
    )
    .unwrap();
    let catalog = Catalog::load_extra(&file).unwrap();
    let builtin = Catalog::builtin();
    assert_eq!(catalog.len(), builtin.len() + 1);
    let github = catalog.get("github").unwrap();
    assert_eq!(github.display_name, "GitHub Enterprise");
    assert_eq!(
        github.authorization_url,
        builtin.get("github").unwrap().authorization_url
    );
    assert_eq!(catalog.get("slack").unwrap().auth_mode, AuthMode::ApiKey);
    assert_eq!(
        catalog.get("gmail-again").unwrap().proxy,
        builtin.get("google-mail").unwrap().proxy
    );
    assert_eq!(catalog.get("hubspot"), builtin.get("hubspot"));

    let missing = dir.path().join("missing.yaml");
    let err = Catalog::load_extra(&missing).unwrap_err().to_string();
    assert!(err.contains(&missing.display().to_string()), "{err}");
}

/// Every `${connectionConfig.x}` a builtin entry uses is a field it declares, so a connection
/// can be asked for it.
#[test]
fn builtin_entries_declare_the_connection_config_they_use() {
    let catalog = Catalog::builtin();
    assert!(catalog.len() >= 25);
    for (name, provider) in catalog.list() {
        let text = serde_json::to_string(provider).unwrap();
        for used in text.split("${connectionConfig.").skip(1) {
            let key = &used[..used.find('}').unwrap()];
            assert!(
                provider.connection_config.contains_key(key),
                "{name} uses connectionConfig.{key} without declaring it"
            );
        }
    }
}

fn obj(pairs: &[(&str, Value)]) -> Map<String, Value> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

#[test]
fn interpolation_fills_in_nangos_template_forms() {
    let config = obj(&[("subdomain", json!("acme")), ("port", json!(8443))]);
    let creds = obj(&[
        ("apiKey", json!("k3y")),
        ("username", json!("ann@example.com")),
        ("password", json!("pw")),
        ("raw", json!({"id_token": "idt"})),
    ]);
    let fill = |t: &str| interpolate(t, &config, &creds).unwrap();
    assert_eq!(
        fill("https://${connectionConfig.subdomain}.zendesk.com:${connectionConfig.port}"),
        "https://acme.zendesk.com:8443"
    );
    assert_eq!(fill("Bearer ${apiKey}"), "Bearer k3y");
    assert_eq!(fill("${credentials.raw.id_token}"), "idt");
    assert_eq!(
        fill("Basic ${base64(${credentials.username}/token:${credentials.password})}"),
        "Basic YW5uQGV4YW1wbGUuY29tL3Rva2VuOnB3"
    );
    assert_eq!(
        fill("https://${connectionConfig.hostname}/oauth || https://login.example.com/oauth"),
        "https://login.example.com/oauth"
    );
    assert_eq!(
        fill("https://${connectionConfig.subdomain}.example.com || https://fallback.example.com"),
        "https://acme.example.com"
    );
    assert_eq!(fill("no templates here"), "no templates here");
}

#[test]
fn interpolation_errors_name_the_missing_value_and_never_a_secret() {
    let creds = obj(&[("apiKey", json!("s3cr3t-key"))]);
    let config = obj(&[("nested", json!({"a": 1}))]);
    let err = interpolate(
        "https://${connectionConfig.subdomain}.x.com?k=${apiKey}",
        &config,
        &creds,
    )
    .unwrap_err();
    let Error::Invalid { field, message } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(field, "connectionConfig.subdomain");
    assert!(message.contains("missing"), "{message}");
    assert!(!err.to_string().contains("s3cr3t"), "{err}");

    let err = interpolate("${accessToken}", &config, &creds).unwrap_err();
    assert!(
        matches!(&err, Error::Invalid { field, .. } if field == "accessToken"),
        "{err}"
    );
    let err = interpolate("${connectionConfig.nested}", &config, &creds).unwrap_err();
    assert!(
        err.to_string().contains("string, number or boolean"),
        "{err}"
    );
    let err = interpolate("${now:X}", &config, &creds).unwrap_err();
    assert!(
        err.to_string()
            .contains("unsupported expression `${now:X}`"),
        "{err}"
    );
    let err = interpolate("https://${connectionConfig.x", &config, &creds).unwrap_err();
    assert!(err.to_string().contains("unterminated"), "{err}");
    // With every alternative failing, the first one's problem is reported.
    let err = interpolate(
        "${connectionConfig.a} || ${connectionConfig.b}",
        &config,
        &creds,
    )
    .unwrap_err();
    assert!(
        matches!(&err, Error::Invalid { field, .. } if field == "connectionConfig.a"),
        "{err}"
    );
}
