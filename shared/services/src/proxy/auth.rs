//! Credentials on a proxied call, as Nango puts them: a default `Authorization` header by
//! credential type (Bearer for OAuth2 tokens, Basic for username and password), then the
//! catalog's `proxy.headers` and `proxy.query` templates over it (they win, so an entry can say
//! `authorization: token ${accessToken}` or put an API key in `x-api-key` or `?key=`), then the
//! caller's own headers over both.
//!
//! Values are filled in here and go straight onto the request: errors name the header or
//! parameter, never its value.

use std::collections::BTreeMap;

use base64::Engine;
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderName, HeaderValue};
use url::Url;

use super::ConnectionAuth;
use crate::connections::Credentials;
use crate::providers::{self, Provider};
use crate::{Error, Result};

/// The headers of one attempt: default auth, catalog headers, then `forwarded`.
pub fn headers(
    provider_name: &str,
    provider: &Provider,
    auth: ConnectionAuth<'_>,
    forwarded: &HeaderMap,
) -> Result<HeaderMap> {
    let mut headers = HeaderMap::new();
    let default = match auth.credentials {
        Credentials::OAuth2(token) => Some(format!("Bearer {}", token.access_token)),
        Credentials::OAuth2ClientCredentials { token, .. } => Some(format!("Bearer {token}")),
        Credentials::Basic { username, password } => Some(format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"))
        )),
        Credentials::ApiKey { .. } => {
            // API keys have no standard place: the catalog entry must say where it goes.
            if !passes_credentials(provider) {
                return Err(Error::invalid(
                    "provider",
                    format!(
                        "provider `{provider_name}` uses API keys, but its catalog entry has no \
                         `proxy.headers` or `proxy.query` template that sends the key (for example \
                         `headers: {{authorization: Bearer ${{apiKey}}}}` or \
                         `query: {{api_key: ${{apiKey}}}}`); add one to the catalog"
                    ),
                ));
            }
            None
        }
        Credentials::None => None,
    };
    if let Some(value) = default {
        headers.insert(
            AUTHORIZATION,
            secret_value(&value, provider_name, "proxy.headers", "authorization")?,
        );
    }
    if let Some(proxy) = &provider.proxy {
        let catalog = templates(provider_name, "proxy.headers", &proxy.headers, auth)?;
        for (name, value) in &catalog {
            headers.insert(name.clone(), value.clone());
        }
    }
    for (name, value) in forwarded {
        headers.insert(name.clone(), value.clone());
    }
    Ok(headers)
}

/// Header templates of the catalog entry (`field` names them in errors), filled in with the
/// connection's config and credentials; the values are marked sensitive.
pub fn templates(
    provider_name: &str,
    field: &str,
    templates: &BTreeMap<String, String>,
    auth: ConnectionAuth<'_>,
) -> Result<HeaderMap> {
    let values = auth.credentials.as_template_values();
    let mut headers = HeaderMap::new();
    for (name, template) in templates {
        let header = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
            Error::invalid(
                format!("{field}.{name}"),
                format!("provider `{provider_name}`: not a valid HTTP header name"),
            )
        })?;
        let value = providers::interpolate(template, auth.connection_config, &values)?;
        headers.insert(header, secret_value(&value, provider_name, field, name)?);
    }
    Ok(headers)
}

/// Adds the catalog's `proxy.query` parameters to `url`; they replace parameters of the same
/// name the caller gave.
pub fn query(provider: &Provider, auth: ConnectionAuth<'_>, url: &mut Url) -> Result<()> {
    let Some(templates) = provider.proxy.as_ref().map(|p| &p.query) else {
        return Ok(());
    };
    if templates.is_empty() {
        return Ok(());
    }
    let values = auth.credentials.as_template_values();
    let mut added = Vec::with_capacity(templates.len());
    for (name, template) in templates {
        added.push((
            name,
            providers::interpolate(template, auth.connection_config, &values)?,
        ));
    }
    let kept: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(k, _)| !templates.contains_key(k.as_ref()))
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    if url.query_pairs().count() != kept.len() {
        // Rebuilt only when something is replaced, so the caller's encoding otherwise stays.
        url.set_query(None);
        url.query_pairs_mut().extend_pairs(&kept);
    }
    url.query_pairs_mut().extend_pairs(added);
    Ok(())
}

/// Whether any of the entry's proxy templates reads a credential (anything other than
/// `${connectionConfig.x}`).
fn passes_credentials(provider: &Provider) -> bool {
    let Some(proxy) = &provider.proxy else {
        return false;
    };
    std::iter::once(&proxy.base_url)
        .chain(proxy.headers.values())
        .chain(proxy.query.values())
        .any(|t| t.replace("${connectionConfig.", "").contains("${"))
}

/// A header value marked sensitive (hyper then never prints it); `field.header` names it in
/// errors.
fn secret_value(
    value: &str,
    provider_name: &str,
    field: &str,
    header: &str,
) -> Result<HeaderValue> {
    let mut value = HeaderValue::from_str(value).map_err(|_| {
        Error::invalid(
            format!("{field}.{header}"),
            format!(
                "provider `{provider_name}`: the filled-in value is not a valid HTTP header value"
            ),
        )
    })?;
    value.set_sensitive(true);
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connections::{Connection, OAuth2Token};
    use crate::providers::Catalog;
    use crate::{ConnectionRowId, EnvironmentId, IntegrationId};
    use serde_json::{Map, Value, json};

    fn connection(credentials: Credentials, config: Value) -> Connection {
        let now = chrono::Utc::now();
        Connection {
            id: ConnectionRowId(1),
            uuid: uuid::Uuid::new_v4(),
            environment_id: EnvironmentId(1),
            integration_id: IntegrationId(1),
            provider_config_key: "key".into(),
            provider: "p".into(),
            connection_id: "c".into(),
            credentials,
            connection_config: match config {
                Value::Object(m) => m,
                _ => Map::new(),
            },
            secret_config: Vec::new(),
            metadata: None,
            end_user: None,
            tags: Map::new(),
            webhook_url_override: None,
            last_fetched_at: None,
            refresh_failures: 0,
            refresh_error: None,
            last_refresh_at: None,
            last_refresh_failure_at: None,
            created_at: now,
            updated_at: now,
        }
    }

    fn provider(yaml: &str) -> Provider {
        Catalog::from_yaml("test", yaml)
            .unwrap()
            .get("p")
            .unwrap()
            .clone()
    }

    fn oauth(token: &str) -> Credentials {
        Credentials::OAuth2(OAuth2Token {
            access_token: token.into(),
            refresh_token: None,
            expires_at: None,
            raw: Value::Null,
        })
    }

    #[test]
    fn default_auth_by_credential_type() {
        let p = provider("p: {display_name: P, auth_mode: OAUTH2, proxy: {base_url: 'https://x'}}");
        let h = headers(
            "p",
            &p,
            (&connection(oauth("tok"), json!({}))).into(),
            &HeaderMap::new(),
        )
        .unwrap();
        assert_eq!(h[AUTHORIZATION], "Bearer tok");
        assert!(h[AUTHORIZATION].is_sensitive());

        let basic = Credentials::Basic {
            username: "u".into(),
            password: "p".into(),
        };
        let h = headers(
            "p",
            &p,
            (&connection(basic, json!({}))).into(),
            &HeaderMap::new(),
        )
        .unwrap();
        assert_eq!(h[AUTHORIZATION], "Basic dTpw");

        let h = headers(
            "p",
            &p,
            (&connection(Credentials::None, json!({}))).into(),
            &HeaderMap::new(),
        )
        .unwrap();
        assert!(h.is_empty());
    }

    #[test]
    fn catalog_templates_then_caller_headers_win() {
        let p = provider(
            "p: {display_name: P, auth_mode: OAUTH2, proxy: {base_url: 'https://x', headers: \
             {authorization: 'token ${accessToken}', x-tenant: '${connectionConfig.tenant}', \
             accept: application/json}}}",
        );
        let mut forwarded = HeaderMap::new();
        forwarded.insert("accept", HeaderValue::from_static("text/csv"));
        let c = connection(oauth("tok"), json!({"tenant": "acme"}));
        let h = headers("p", &p, (&c).into(), &forwarded).unwrap();
        assert_eq!(h[AUTHORIZATION], "token tok");
        assert_eq!(h["x-tenant"], "acme");
        assert_eq!(h["accept"], "text/csv");
    }

    #[test]
    fn api_keys_need_a_template() {
        let key = Credentials::ApiKey {
            api_key: "sk_123".into(),
        };
        let none =
            provider("p: {display_name: P, auth_mode: API_KEY, proxy: {base_url: 'https://x'}}");
        let e = headers(
            "p",
            &none,
            (&connection(key.clone(), json!({}))).into(),
            &HeaderMap::new(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("proxy.headers"), "{e}");
        assert!(!e.to_string().contains("sk_123"));

        let in_query = provider(
            "p: {display_name: P, auth_mode: API_KEY, proxy: {base_url: 'https://x', query: \
             {key: '${apiKey}'}}}",
        );
        let c = connection(key, json!({}));
        assert!(
            headers("p", &in_query, (&c).into(), &HeaderMap::new())
                .unwrap()
                .is_empty()
        );
        let mut url = Url::parse("https://x/a?key=mine&b=1%202").unwrap();
        query(&in_query, (&c).into(), &mut url).unwrap();
        assert_eq!(url.as_str(), "https://x/a?b=1+2&key=sk_123");
        let mut url = Url::parse("https://x/a?b=1%202").unwrap();
        query(&in_query, (&c).into(), &mut url).unwrap();
        assert_eq!(url.as_str(), "https://x/a?b=1%202&key=sk_123");
    }
}
