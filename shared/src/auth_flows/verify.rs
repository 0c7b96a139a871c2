//! Checking new API-key and basic credentials before storing them, with the provider's
//! `proxy.verification` request(s) as Nango does: the credentials pass when any endpoint answers
//! 2xx. The request is built from the catalog the way the proxy calls the provider (base URL,
//! headers and query with `${...}` templates filled in).

use std::time::Duration;

use serde_json::{Map, Value};

use crate::connections::Credentials;
use crate::context::Context;
use crate::providers::{AuthMode, Provider, interpolate};
use crate::{Error, Result};

const VERIFICATION_TIMEOUT: Duration = Duration::from_secs(15);

fn refused(provider: &Provider, detail: String) -> Error {
    Error::BadRequest {
        code: "connection_test_failed",
        message: format!(
            "{} did not accept the credentials: {detail}",
            provider.display_name
        ),
    }
}

/// Checks `credentials` with the provider's verification request; a provider without one
/// passes unchecked.
pub(super) async fn check(
    ctx: &Context,
    provider_name: &str,
    provider: &Provider,
    connection_config: &Map<String, Value>,
    credentials: &Credentials,
) -> Result<()> {
    let Some(proxy) = &provider.proxy else {
        return Ok(());
    };
    let Some(verification) = proxy
        .verification
        .as_ref()
        .filter(|v| !v.endpoints.is_empty())
    else {
        return Ok(());
    };
    let values = credentials.as_template_values();
    let fill = |template: &str| interpolate(template, connection_config, &values);
    let base = fill(
        verification
            .base_url_override
            .as_deref()
            .unwrap_or(&proxy.base_url),
    )?;
    let method_name = verification.method.as_deref().unwrap_or("GET");
    let method =
        reqwest::Method::from_bytes(method_name.to_ascii_uppercase().as_bytes()).map_err(|_| {
            Error::BadRequest {
                code: "invalid_provider_config",
                message: format!(
                    "provider `{provider_name}` has an invalid verification method `{method_name}`"
                ),
            }
        })?;
    let mut headers = Vec::new();
    for (name, template) in proxy.headers.iter().chain(&verification.headers) {
        headers.retain(|(n, _): &(String, String)| !n.eq_ignore_ascii_case(name));
        headers.push((name.clone(), fill(template)?));
    }
    let mut query = Vec::new();
    for (name, template) in &proxy.query {
        query.push((name.clone(), fill(template)?));
    }
    let basic = match credentials {
        // Nango's proxy signs basic-auth calls itself unless the catalog sets the header.
        Credentials::Basic { username, password }
            if provider.auth_mode == AuthMode::Basic
                && !headers
                    .iter()
                    .any(|(n, _)| n.eq_ignore_ascii_case("authorization")) =>
        {
            Some((username.as_str(), password.as_str()))
        }
        _ => None,
    };

    let mut last = String::new();
    for endpoint in &verification.endpoints {
        let path = fill(endpoint)?;
        let url = format!(
            "{}/{}",
            base.trim_end_matches('/'),
            path.trim_start_matches('/')
        );
        let mut request = ctx
            .http
            .request(method.clone(), &url)
            .timeout(VERIFICATION_TIMEOUT)
            .query(&query);
        for (name, value) in &headers {
            request = request.header(name, value);
        }
        if let Some((user, password)) = basic {
            request = request.basic_auth(user, Some(password));
        }
        if let Some(data) = &verification.data {
            request = request.json(data);
        }
        match request.send().await {
            Ok(r) if r.status().is_success() => return Ok(()),
            // The endpoint as the catalog writes it: filled in, it could carry the key.
            Ok(r) => last = format!("{method} {endpoint} answered {}", r.status().as_u16()),
            Err(e) => last = format!("{method} {endpoint} failed: {}", e.without_url()),
        }
    }
    Err(refused(provider, last))
}
