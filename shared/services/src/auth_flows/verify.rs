//! Checking new API-key and basic credentials before storing them, with the provider's
//! `proxy.verification` request(s) as Nango does: the credentials pass when any endpoint answers
//! 2xx. The request is built by the proxy's own code ([`crate::proxy::target`],
//! [`crate::proxy::auth`]), so it follows the proxy's base URL and credential rules.

use std::time::Duration;

use serde_json::{Map, Value};

use crate::connections::Credentials;
use crate::context::Context;
use crate::providers::{Provider, interpolate};
use crate::proxy::{ConnectionAuth, auth, target};
use crate::{Error, ErrorCode, Result};

const VERIFICATION_TIMEOUT: Duration = Duration::from_secs(15);

fn refused(provider: &Provider, detail: String) -> Error {
    Error::BadRequest {
        code: ErrorCode::ConnectionTestFailed,
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
    let connection = ConnectionAuth {
        connection_config,
        credentials,
    };
    let base = match &verification.base_url_override {
        Some(template) => target::catalog_url(
            provider_name,
            "proxy.verification.base_url_override",
            template,
            connection,
        )?,
        None => target::catalog_url(provider_name, "proxy.base_url", &proxy.base_url, connection)?,
    };
    let method_name = verification.method.as_deref().unwrap_or("GET");
    let method =
        reqwest::Method::from_bytes(method_name.to_ascii_uppercase().as_bytes()).map_err(|_| {
            Error::BadRequest {
                code: ErrorCode::InvalidProviderConfig,
                message: format!(
                    "provider `{provider_name}` has an invalid verification method `{method_name}`"
                ),
            }
        })?;
    // The verification request's own headers win over the catalog's, as the caller's do on a
    // proxied call.
    let own = auth::templates(
        provider_name,
        "proxy.verification.headers",
        &verification.headers,
        connection,
    )?;
    let headers = auth::headers(provider_name, provider, connection, &own)?;
    let values = credentials.as_template_values();

    let mut last = String::new();
    for endpoint in &verification.endpoints {
        let mut url = target::join(&base, &interpolate(endpoint, connection_config, &values)?)?;
        auth::query(provider, connection, &mut url)?;
        let mut request = ctx
            .http
            .request(method.clone(), url)
            .map_err(|r| Error::outbound_refused(&r))?
            .timeout(VERIFICATION_TIMEOUT)
            .headers(headers.clone());
        if let Some(data) = &verification.data {
            request = request.json(data);
        }
        match request.send().await {
            Ok(r) if r.status().is_success() => return Ok(()),
            // The endpoint as the catalog writes it: filled in, it could carry the key.
            Ok(r) => last = format!("{method} {endpoint} answered {}", r.status().as_u16()),
            Err(ref e) if let Some(refused) = crate::outbound::refusal(e) => {
                return Err(Error::outbound_refused(refused));
            }
            Err(e) => last = format!("{method} {endpoint} failed: {}", e.without_url()),
        }
    }
    Err(refused(provider, last))
}
