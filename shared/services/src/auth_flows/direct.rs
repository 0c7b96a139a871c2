//! Flows that create a connection in one request: API key and basic auth (checked with the
//! provider's verification request when the catalog has one) and OAuth 2 client credentials
//! (a token requested at once).

use serde_json::Value;

use super::{Caller, Outcome, Request};
use crate::connections::Credentials;
use crate::context::Context;
use crate::oauth::{self, Client, Grant};
use crate::providers::{AuthMode, hosts};
use crate::{Error, ErrorCode, Result};

/// Longest credential value accepted (Nango's limit).
const MAX_CREDENTIAL_LEN: usize = 1024;

fn check_length(field: &str, value: &str, required: bool) -> Result<()> {
    if required && value.is_empty() {
        return Err(Error::invalid(field, "is required"));
    }
    if value.len() > MAX_CREDENTIAL_LEN {
        return Err(Error::invalid(
            field,
            format!("must be at most {MAX_CREDENTIAL_LEN} characters"),
        ));
    }
    Ok(())
}

async fn store_checked(
    ctx: &Context,
    caller: &Caller,
    request: &Request,
    mode: AuthMode,
    credentials: Credentials,
) -> Result<Outcome> {
    let mut target = super::resolve(ctx, caller, request, mode).await?;
    super::check_connection_config(target.provider, &mut target.connection_config)?;
    super::check_hosts(&target)?;
    super::verify::check(
        ctx,
        &target.integration.provider,
        target.provider,
        &target.connection_config,
        &credentials,
    )
    .await?;
    super::store(ctx, caller.environment(), target, credentials).await
}

/// `POST /api-auth/api-key/:providerConfigKey`.
pub async fn api_key(
    ctx: &Context,
    caller: &Caller,
    request: &Request,
    api_key: &str,
) -> Result<Outcome> {
    check_length("apiKey", api_key, true)?;
    let credentials = Credentials::ApiKey {
        api_key: api_key.to_string(),
    };
    store_checked(ctx, caller, request, AuthMode::ApiKey, credentials).await
}

/// `POST /api-auth/basic/:providerConfigKey`. Either part may be empty: some providers use only
/// a username or only a password.
pub async fn basic(
    ctx: &Context,
    caller: &Caller,
    request: &Request,
    username: &str,
    password: &str,
) -> Result<Outcome> {
    check_length("username", username, false)?;
    check_length("password", password, false)?;
    let credentials = Credentials::Basic {
        username: username.to_string(),
        password: password.to_string(),
    };
    store_checked(ctx, caller, request, AuthMode::Basic, credentials).await
}

/// The OAuth app of a client-credentials connection; the integration's when absent.
#[derive(Clone, Default)]
pub struct ClientCredentials {
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
}

impl std::fmt::Debug for ClientCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCredentials")
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

/// `POST /oauth2/auth/:providerConfigKey`: requests a token with the client credentials grant
/// and stores it with the client credentials, so it can be requested again when it expires.
pub async fn client_credentials(
    ctx: &Context,
    caller: &Caller,
    request: &Request,
    client: ClientCredentials,
) -> Result<Outcome> {
    let mut target = super::resolve(ctx, caller, request, AuthMode::OAuth2Cc).await?;
    super::check_connection_config(target.provider, &mut target.connection_config)?;
    super::check_hosts(&target)?;
    let client_id = match client.client_id.filter(|id| !id.is_empty()) {
        Some(id) => id,
        None => target
            .integration
            .client_id
            .clone()
            .filter(|id| !id.is_empty())
            .ok_or_else(|| Error::invalid("client_id", "is required: the integration has none"))?,
    };
    let client_secret = match client.client_secret.filter(|s| !s.is_empty()) {
        Some(secret) => secret,
        None => target
            .integration
            .client_secret(&ctx.cipher)?
            .map(|s| secrecy::ExposeSecret::expose_secret(&s).to_string())
            .ok_or_else(|| {
                Error::invalid("client_secret", "is required: the integration has none")
            })?,
    };
    check_length("client_id", &client_id, true)?;
    check_length("client_secret", &client_secret, true)?;
    let scopes_override = match target.connection_config.get("oauth_scopes") {
        Some(Value::String(s)) => Some(s.clone()),
        _ => None,
    };
    let scope = super::scopes(&target, scopes_override.as_deref());
    let template = target
        .provider
        .resolved_token_url()
        .ok_or_else(|| Error::BadRequest {
            code: ErrorCode::InvalidProviderConfig,
            message: format!(
                "provider `{}` has no token_url in the catalog",
                target.integration.provider
            ),
        })?;
    let token_url = hosts::render_checked(
        &target.integration.provider,
        target.provider,
        &target.integration.allowed_hosts()?,
        template,
        &target.connection_config,
        &serde_json::Map::new(),
    )?;
    let token = oauth::request_token(
        &ctx.http,
        target.provider,
        &token_url,
        &Client {
            id: &client_id,
            secret: &client_secret,
        },
        Grant::ClientCredentials {
            scopes: Some(&scope),
        },
    )
    .await?;
    let values =
        super::oauth2::response_metadata(&token.raw, &target.provider.token_response_metadata);
    super::accept_provider_values(&mut target, values)?;
    let credentials = Credentials::OAuth2ClientCredentials {
        token: token.access_token,
        expires_at: token.expires_at,
        client_id,
        client_secret,
        raw: token.raw,
    };
    super::store(ctx, caller.environment(), target, credentials).await
}
