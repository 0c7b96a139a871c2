//! The OAuth 2 authorization-code flow. [`authorize`] stores a server-side session under a
//! random `state` (with the PKCE verifier, sealed) and returns the provider's authorization URL;
//! the provider sends the browser back to `{LASSO_PUBLIC_URL}/oauth/callback`, where
//! [`callback`] consumes the session (once: a replayed, unknown or expired `state` is refused),
//! exchanges the code for tokens and stores the connection. Table owner: this module
//! (`oauth_sessions`).

use crate::{EnvironmentId, IntegrationId};
use std::collections::BTreeMap;

use base64::Engine;
use chrono::Duration;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use sqlx::{FromRow, PgPool};

use super::{Caller, Outcome, Request, Target};
use crate::connect_sessions::{self, IntegrationDefaults};
use crate::connections::{Credentials, OAuth2Token};
use crate::context::Context;
use crate::crypto::{random_token, token_digest};
use crate::environments::Environment;
use crate::oauth::{self, Client, Grant};
use crate::providers::{AuthMode, Provider, hosts, interpolate};
use crate::webhooks::{self, AuthEvent, AuthFailure, AuthOperation};
use crate::{Error, ErrorCode, Result, integrations};

/// How long a user has between leaving for the provider and coming back.
pub const SESSION_LIFETIME: Duration = Duration::minutes(10);

/// Longest piece of a provider's callback error we repeat.
const MAX_ERROR_TEXT: usize = 300;

/// Authorization parameters the flow's safety depends on: neither the catalog nor the caller
/// may set them.
const RESERVED_PARAMS: [&str; 4] = [
    "state",
    "redirect_uri",
    "code_challenge",
    "code_challenge_method",
];

/// `GET /oauth/connect/:providerConfigKey`.
#[derive(Debug, Clone, Default)]
pub struct Authorize {
    pub request: Request,
    /// `user_scope` (Slack's user-token scopes), sent as the `user_scope` parameter.
    pub user_scope: Option<String>,
    /// `authorization_params[...]`, over the catalog's; the value `undefined` removes a catalog
    /// parameter (as in Nango).
    pub authorization_params: BTreeMap<String, String>,
    /// The frontend SDK's socket (`ws_client_id`), told the outcome when the callback ends.
    pub ws_client_id: Option<String>,
    /// The origin of the page that opened the flow (`scheme://host[:port]`), the only one the
    /// callback page tells the outcome.
    pub opener_origin: Option<String>,
}

/// A started flow: where to send the browser, and the cookie that binds the flow to it.
pub struct Started {
    pub url: String,
    pub cookie: BindingCookie,
}

/// The cookie `GET /oauth/connect` sets and the callback must present. Each flow has a cookie
/// of its own name, so flows started side by side in one browser do not replace each other's.
pub struct BindingCookie {
    pub name: String,
    pub value: String,
}

/// The binding cookie's name for the flow of `state`.
pub fn binding_cookie_name(state: &str) -> String {
    format!("lasso_oauth_{}", &hex::encode(token_digest(state))[..16])
}

/// The callback URL every provider must have registered for the OAuth app.
pub fn redirect_uri(public_url: &str) -> String {
    format!("{public_url}/oauth/callback")
}

fn invalid_provider(provider: &str, what: &str) -> Error {
    Error::BadRequest {
        code: ErrorCode::InvalidProviderConfig,
        message: format!("provider `{provider}` has no {what} in the catalog"),
    }
}

fn missing_app_credentials(key: &str) -> Error {
    Error::BadRequest {
        code: ErrorCode::MissingClientCredentials,
        message: format!(
            "integration `{key}` has no client_id and client_secret; set them with PATCH /integrations/{key}"
        ),
    }
}

/// The S256 code challenge of a PKCE verifier (RFC 7636).
fn code_challenge(verifier: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

fn verifier_aad(state_hash: &[u8]) -> String {
    format!("oauth_session:{}:code_verifier", hex::encode(state_hash))
}

fn param_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Query parameters in order; setting a name again replaces its value in place.
#[derive(Default)]
struct Params(Vec<(String, String)>);

impl Params {
    fn set(&mut self, name: &str, value: String) {
        match self.0.iter_mut().find(|(n, _)| n == name) {
            Some(slot) => slot.1 = value,
            None => self.0.push((name.to_string(), value)),
        }
    }

    fn remove(&mut self, name: &str) {
        self.0.retain(|(n, _)| n != name);
    }
}

/// What goes into one authorization URL.
struct UrlParts<'a> {
    client_id: &'a str,
    redirect_uri: &'a str,
    scope: &'a str,
    state: &'a str,
    code_challenge: Option<String>,
    user_scope: Option<&'a str>,
    user_params: &'a BTreeMap<String, String>,
}

/// The provider's authorization URL: its template filled with the connection config, then the
/// standard parameters, the catalog's (interpolated), PKCE, and the caller's.
fn authorization_url(
    provider_name: &str,
    provider: &Provider,
    connection_config: &Map<String, Value>,
    parts: UrlParts<'_>,
) -> Result<String> {
    let template = provider
        .authorization_url
        .as_deref()
        .ok_or_else(|| invalid_provider(provider_name, "authorization_url"))?;
    let base = interpolate(template, connection_config, &Map::new())?;
    let mut url = url::Url::parse(&base).map_err(|e| {
        Error::invalid(
            "params",
            format!("the authorization URL `{base}` is not a valid URL: {e}"),
        )
    })?;
    let mut params = Params::default();
    params.set("response_type", "code".into());
    params.set("client_id", parts.client_id.into());
    params.set("redirect_uri", parts.redirect_uri.into());
    if !parts.scope.is_empty() {
        params.set("scope", parts.scope.into());
    }
    params.set("state", parts.state.into());
    for (name, value) in &provider.authorization_params {
        if RESERVED_PARAMS.contains(&name.as_str()) {
            continue;
        }
        let value = match value {
            Value::String(s) => interpolate(s, connection_config, &Map::new())?,
            other => param_text(other),
        };
        params.set(name, value);
    }
    if let Some(challenge) = parts.code_challenge {
        params.set("code_challenge", challenge);
        params.set("code_challenge_method", "S256".into());
    }
    if let Some(user_scope) = parts.user_scope {
        params.set("user_scope", user_scope.into());
    }
    for (name, value) in parts.user_params {
        if RESERVED_PARAMS.contains(&name.as_str()) {
            return Err(Error::invalid(
                format!("authorization_params[{name}]"),
                "is set by the OAuth flow itself",
            ));
        }
        if value == "undefined" {
            params.remove(name);
        } else {
            params.set(name, value.clone());
        }
    }
    url.query_pairs_mut().extend_pairs(&params.0);
    let mut out = url.to_string();
    for (placeholder, replacement) in &provider.authorization_url_replacements {
        out = out.replace(placeholder.as_str(), replacement);
    }
    Ok(out)
}

/// What [`authorize`] checks before it starts a flow: the request resolves, its connection
/// config passes the catalog's checks and host rules, and the integration has its client id and
/// secret. Returns the target and the client id.
async fn prepare<'c>(
    ctx: &'c Context,
    caller: &Caller,
    request: &Request,
) -> Result<(Target<'c>, String)> {
    let mut target = super::resolve(ctx, caller, request, AuthMode::OAuth2).await?;
    super::check_connection_config(target.provider, &mut target.connection_config)?;
    super::check_hosts(&target)?;
    let key = target.integration.unique_key.clone();
    let client_id = target
        .integration
        .client_id
        .clone()
        .filter(|id| !id.is_empty())
        .ok_or_else(|| missing_app_credentials(&key))?;
    // Needed at the callback; better refused now than after the user consented.
    if target.integration.client_secret(&ctx.cipher)?.is_none() {
        return Err(missing_app_credentials(&key));
    }
    Ok((target, client_id))
}

/// Checks a request as [`authorize`] would, starting nothing: the Connect UI asks before it
/// sends a popup to the provider, so a mistyped field is shown next to the field.
pub async fn check(ctx: &Context, caller: &Caller, request: &Request) -> Result<()> {
    prepare(ctx, caller, request).await.map(|_| ())
}

/// Starts the flow: stores the OAuth session and returns the URL to send the browser to.
pub async fn authorize(ctx: &Context, caller: &Caller, input: Authorize) -> Result<Started> {
    let (mut target, client_id) = prepare(ctx, caller, &input.request).await?;
    let from_session = target.connect_session_id.is_some();
    // A connect session's defaults win over what its frontend sends (as in Nango).
    let (user_scope, user_params, scopes_override) = if from_session {
        let d: &IntegrationDefaults = &target.defaults;
        (
            d.user_scopes.clone(),
            d.authorization_params
                .clone()
                .unwrap_or(input.authorization_params),
            d.connection_config
                .as_ref()
                .and_then(|c| c.get("oauth_scopes_override"))
                .map(param_text),
        )
    } else {
        (
            input.user_scope,
            input.authorization_params,
            target
                .connection_config
                .get("oauth_scopes_override")
                .map(param_text),
        )
    };
    let user_scope = user_scope.filter(|s| !s.is_empty());
    if let Some(s) = &user_scope {
        target
            .connection_config
            .insert("user_scope".into(), Value::String(s.clone()));
    }
    let scope = super::scopes(&target, scopes_override.as_deref());
    let state = random_token("");
    let state_hash = token_digest(&state);
    let binding = random_token("");
    let verifier = (!target.provider.disable_pkce).then(|| random_token(""));
    let redirect_uri = redirect_uri(&ctx.config.public_url);
    let url = authorization_url(
        &target.integration.provider,
        target.provider,
        &target.connection_config,
        UrlParts {
            client_id: &client_id,
            redirect_uri: &redirect_uri,
            scope: &scope,
            state: &state,
            code_challenge: verifier.as_deref().map(code_challenge),
            user_scope: user_scope.as_deref(),
            user_params: &user_params,
        },
    )?;
    sqlx::query(
        "INSERT INTO oauth_sessions (state_hash, environment_id, integration_id, connection_id,
            code_verifier_encrypted, redirect_uri, connect_session_id, connection_config,
            expires_at, ws_client_id, browser_binding_hash, opener_origin)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, now() + make_interval(secs => $9), $10, $11,
                 $12)",
    )
    .bind(&state_hash)
    .bind(caller.environment().id)
    .bind(target.integration.id)
    .bind(&target.connection_id)
    .bind(
        verifier
            .as_ref()
            .map(|v| ctx.cipher.seal(v.as_bytes(), &verifier_aad(&state_hash))),
    )
    .bind(&redirect_uri)
    .bind(target.connect_session_id)
    .bind(Value::Object(target.connection_config))
    .bind(SESSION_LIFETIME.num_seconds() as f64)
    .bind(&input.ws_client_id)
    .bind(token_digest(&binding))
    .bind(&input.opener_origin)
    .execute(&ctx.db)
    .await?;
    Ok(Started {
        url,
        cookie: BindingCookie {
            name: binding_cookie_name(&state),
            value: binding,
        },
    })
}

#[derive(FromRow)]
struct Session {
    state_hash: Vec<u8>,
    environment_id: EnvironmentId,
    environment_uuid: uuid::Uuid,
    environment_name: String,
    integration_id: IntegrationId,
    connection_id: String,
    code_verifier_encrypted: Option<Vec<u8>>,
    redirect_uri: String,
    connect_session_id: Option<i64>,
    connection_config: Value,
    ws_client_id: Option<String>,
    opener_origin: Option<String>,
}

fn invalid_state(message: &str) -> Error {
    Error::BadRequest {
        code: ErrorCode::InvalidState,
        message: message.to_string(),
    }
}

/// Takes the session of `state` for this callback, atomically: of two callbacks with the same
/// state, one gets it and the other an error. `binding` is the flow's cookie as the browser
/// presented it: a browser without it gets an error and leaves the session to the one that
/// started the flow.
async fn consume(db: &PgPool, state: &str, binding: Option<&str>) -> Result<Session> {
    let state_hash = token_digest(state);
    let binding_hash = binding.map(token_digest);
    let session: Option<Session> = sqlx::query_as(
        "WITH s AS (
            UPDATE oauth_sessions SET consumed_at = now()
            WHERE state_hash = $1 AND consumed_at IS NULL AND expires_at > now()
              AND (browser_binding_hash IS NULL OR browser_binding_hash = $2)
            RETURNING state_hash, environment_id, integration_id, connection_id,
                code_verifier_encrypted, redirect_uri, connect_session_id, connection_config,
                ws_client_id, opener_origin
         )
         SELECT s.*, e.uuid AS environment_uuid, e.name AS environment_name
         FROM s JOIN environments e ON e.id = s.environment_id",
    )
    .bind(&state_hash)
    .bind(&binding_hash)
    .fetch_optional(db)
    .await?;
    if let Some(session) = session {
        return Ok(session);
    }
    let why: Option<(bool, bool, bool)> = sqlx::query_as(
        "SELECT consumed_at IS NOT NULL, expires_at <= now(),
                browser_binding_hash IS NOT NULL AND browser_binding_hash IS DISTINCT FROM $2
         FROM oauth_sessions WHERE state_hash = $1",
    )
    .bind(&state_hash)
    .bind(&binding_hash)
    .fetch_optional(db)
    .await?;
    Err(match why {
        Some((true, _, _)) => invalid_state(
            "this authorization was already completed: an OAuth state can be used only once",
        ),
        Some((false, false, true)) => invalid_state(
            "this authorization was started in another browser: finish it in the browser window that started it",
        ),
        Some((false, _, _)) => invalid_state(&format!(
            "this authorization expired: it must be completed within {} minutes; start it again",
            SESSION_LIFETIME.num_minutes()
        )),
        None => invalid_state(
            "unknown OAuth state: this callback does not belong to an authorization started here",
        ),
    })
}

/// The string or boolean values at `keys` (dotted paths) of `source`, under those keys (Nango's
/// `token_response_metadata` / `redirect_uri_metadata`).
pub(super) fn response_metadata(source: &Value, keys: &[String]) -> Map<String, Value> {
    keys.iter()
        .filter_map(|key| {
            let value = key.split('.').try_fold(source, |v, k| v.get(k))?;
            matches!(value, Value::String(_) | Value::Bool(_)).then(|| (key.clone(), value.clone()))
        })
        .collect()
}

fn short(text: &str) -> String {
    text.chars().take(MAX_ERROR_TEXT).collect()
}

/// Completes the flow from the provider's redirect: consumes the session of `state`, exchanges
/// the code (with the PKCE verifier) and stores the connection. A provider error, a missing code
/// or a failed exchange stores nothing and sends a failure webhook.
pub async fn callback(
    ctx: &Context,
    query: &BTreeMap<String, String>,
    binding: Option<&str>,
) -> Result<Outcome> {
    finish(ctx, query, binding).await.result
}

/// How a callback ended, and the frontend SDK's socket to tell (the `ws_client_id` its
/// authorization carried), when the callback got as far as finding its session.
pub struct Finished {
    pub ws_client_id: Option<String>,
    /// The origin of the page that opened the flow, when it was known.
    pub opener_origin: Option<String>,
    pub result: Result<Outcome>,
}

/// [`callback`], with whom to tell. `binding` is the value of the flow's cookie
/// ([`binding_cookie_name`] of the `state`), if the browser sent it.
pub async fn finish(
    ctx: &Context,
    query: &BTreeMap<String, String>,
    binding: Option<&str>,
) -> Finished {
    let refused = |e| Finished {
        ws_client_id: None,
        opener_origin: None,
        result: Err(e),
    };
    let Some(state) = query.get("state").filter(|s| !s.is_empty()) else {
        return refused(invalid_state("the callback has no `state` parameter"));
    };
    let session = match consume(&ctx.db, state, binding).await {
        Ok(session) => session,
        Err(e) => return refused(e),
    };
    Finished {
        ws_client_id: session.ws_client_id.clone(),
        opener_origin: session.opener_origin.clone(),
        result: complete(ctx, session, query).await,
    }
}

async fn complete(
    ctx: &Context,
    session: Session,
    query: &BTreeMap<String, String>,
) -> Result<Outcome> {
    let environment = Environment {
        id: session.environment_id,
        uuid: session.environment_uuid,
        name: session.environment_name.clone(),
    };
    let integration = integrations::get_by_id(&ctx.db, session.integration_id).await?;
    let provider = ctx
        .providers
        .get(&integration.provider)
        .ok_or_else(|| Error::unknown_provider(&integration.provider))?;
    let connect_session = match session.connect_session_id {
        Some(id) => Some(connect_sessions::get_by_id(&ctx.db, id).await?),
        None => None,
    };
    let connection_config = match session.connection_config {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    let target = |connection_config| Target {
        provider,
        connection_id: session.connection_id.clone(),
        connection_config,
        defaults: IntegrationDefaults::default(),
        end_user: connect_session.as_ref().and_then(|s| s.end_user.clone()),
        tags: connect_session
            .as_ref()
            .map(|s| s.tags.clone())
            .unwrap_or_default(),
        webhook_url_override: connect_session
            .as_ref()
            .and_then(|s| s.webhook_url_override.clone()),
        connect_session_id: session.connect_session_id,
        integration: integration.clone(),
    };
    let failed = async |kind: &'static str, error: Error| {
        let t = target(Map::new());
        webhooks::emit_auth(
            ctx,
            &AuthEvent {
                environment: &environment,
                provider_config_key: &integration.unique_key,
                provider: &integration.provider,
                auth_mode: provider.auth_mode.as_str(),
                connection_id: &t.connection_id,
                // Nothing was stored, so nothing was created or replaced; Nango reports the
                // attempt as a creation.
                operation: AuthOperation::Creation,
                end_user: t.end_user.as_ref(),
                tags: &t.tags,
                webhook_url_override: t.webhook_url_override.as_deref(),
                failure: Some(AuthFailure {
                    kind,
                    description: error.to_string(),
                }),
            },
        )
        .await;
        Err(error)
    };

    if let Some(error) = query.get("error") {
        let described = [Some(error), query.get("error_description")]
            .into_iter()
            .flatten()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(": ");
        return failed(
            "invalid_callback",
            Error::Provider {
                code: ErrorCode::AuthorizationRefused,
                message: format!(
                    "{} refused the authorization: {}",
                    provider.display_name,
                    short(&described)
                ),
            },
        )
        .await;
    }
    let code_param = provider
        .authorization_code_param_in_callback
        .as_deref()
        .unwrap_or("code");
    let Some(code) = query.get(code_param).filter(|c| !c.is_empty()) else {
        return failed(
            "invalid_callback",
            Error::BadRequest {
                code: ErrorCode::InvalidCallback,
                message: format!(
                    "the provider's callback has no `{code_param}` parameter and no error"
                ),
            },
        )
        .await;
    };
    let exchanged = async {
        let verifier = session
            .code_verifier_encrypted
            .as_deref()
            .map(|sealed| ctx.cipher.open(sealed, &verifier_aad(&session.state_hash)))
            .transpose()?
            .map(String::from_utf8)
            .transpose()
            .map_err(|_| Error::Decrypt)?;
        let template = provider
            .resolved_token_url()
            .ok_or_else(|| invalid_provider(&integration.provider, "token_url"))?;
        let token_url = hosts::render_checked(
            &integration.provider,
            provider,
            &integration.allowed_hosts()?,
            template,
            &connection_config,
            &Map::new(),
        )?;
        let client_id = integration.client_id.clone().unwrap_or_default();
        let client_secret = integration
            .client_secret(&ctx.cipher)?
            .ok_or_else(|| missing_app_credentials(&integration.unique_key))?;
        oauth::request_token(
            &ctx.http,
            provider,
            &token_url,
            &Client {
                id: &client_id,
                secret: secrecy::ExposeSecret::expose_secret(&client_secret),
            },
            Grant::AuthorizationCode {
                code,
                redirect_uri: &session.redirect_uri,
                code_verifier: verifier.as_deref(),
            },
        )
        .await
    }
    .await;
    let token = match exchanged {
        Ok(token) => token,
        Err(e) => return failed("token_exchange_failed", e).await,
    };
    // What the provider says about the connection wins over what the user typed: these values
    // (instance URL, API domain, ...) decide where the proxy sends the credentials, so they
    // are held to the same host rules.
    let callback_values = Value::Object(
        query
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect(),
    );
    let mut values = response_metadata(&callback_values, &provider.redirect_uri_metadata);
    values.extend(response_metadata(
        &token.raw,
        &provider.token_response_metadata,
    ));
    let mut stored = target(connection_config);
    if let Err(e) = super::accept_provider_values(&mut stored, values) {
        return failed("invalid_token_response", e).await;
    }
    let credentials = Credentials::OAuth2(OAuth2Token {
        access_token: token.access_token,
        refresh_token: token.refresh_token,
        expires_at: token.expires_at,
        raw: token.raw,
    });
    super::store(ctx, &environment, stored, credentials).await
}

/// Deletes sessions that expired more than `grace` ago.
pub async fn purge_expired(db: &PgPool, grace: Duration) -> Result<u64> {
    Ok(sqlx::query(
        "DELETE FROM oauth_sessions WHERE expires_at < now() - make_interval(secs => $1)",
    )
    .bind(grace.num_seconds() as f64)
    .execute(db)
    .await?
    .rows_affected())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::Catalog;
    use serde_json::json;

    fn provider(yaml: &str) -> Provider {
        Catalog::from_yaml("test", yaml)
            .unwrap()
            .get("p")
            .unwrap()
            .clone()
    }

    fn query(url: &str) -> BTreeMap<String, String> {
        url::Url::parse(url)
            .unwrap()
            .query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    }

    #[test]
    fn pkce_challenge_is_base64url_sha256() {
        // printf %s VERIFIER | openssl dgst -sha256 -binary | basenc --base64url | tr -d =
        assert_eq!(
            code_challenge("lasso-pkce-verifier-0123456789-abcdefghijklmnop"),
            "YPkgUyaoWKDZ90wj-X3ACOp17C6CE01jgELQ-GKb_V8"
        );
    }

    #[test]
    fn authorization_url_has_the_standard_catalog_and_caller_params() {
        let p = provider(
            "p:\n  display_name: P\n  auth_mode: OAUTH2\n  authorization_url: https://${connectionConfig.sub}.example.com/auth?x=1\n  token_url: https://example.com/token\n  authorization_params:\n    access_type: offline\n    prompt: consent\n    audience: ${connectionConfig.sub}-api\n    state: from-catalog\n",
        );
        let config = Map::from_iter([("sub".to_string(), json!("acme"))]);
        let user = BTreeMap::from([
            ("prompt".to_string(), "undefined".to_string()),
            ("login_hint".to_string(), "a@b.c".to_string()),
        ]);
        let url = authorization_url(
            "p",
            &p,
            &config,
            UrlParts {
                client_id: "cid",
                redirect_uri: "https://lasso.example/oauth/callback",
                scope: "read write",
                state: "st",
                code_challenge: Some("ch".into()),
                user_scope: None,
                user_params: &user,
            },
        )
        .unwrap();
        assert!(
            url.starts_with("https://acme.example.com/auth?x=1&response_type=code"),
            "{url}"
        );
        let q = query(&url);
        assert_eq!(q["client_id"], "cid");
        assert_eq!(q["redirect_uri"], "https://lasso.example/oauth/callback");
        assert_eq!(q["scope"], "read write");
        assert_eq!(q["state"], "st", "the catalog cannot replace the state");
        assert_eq!(q["access_type"], "offline");
        assert_eq!(q["audience"], "acme-api");
        assert_eq!(q["code_challenge"], "ch");
        assert_eq!(q["code_challenge_method"], "S256");
        assert_eq!(q["login_hint"], "a@b.c");
        assert!(
            !q.contains_key("prompt"),
            "`undefined` removes a catalog param"
        );

        let bad = BTreeMap::from([("state".to_string(), "mine".to_string())]);
        let e = authorization_url(
            "p",
            &p,
            &config,
            UrlParts {
                client_id: "cid",
                redirect_uri: "r",
                scope: "",
                state: "st",
                code_challenge: None,
                user_scope: None,
                user_params: &bad,
            },
        )
        .unwrap_err();
        assert!(
            matches!(e, Error::Invalid { ref field, .. } if field == "authorization_params[state]")
        );

        let e = authorization_url(
            "p",
            &p,
            &Map::new(),
            UrlParts {
                client_id: "cid",
                redirect_uri: "r",
                scope: "",
                state: "st",
                code_challenge: None,
                user_scope: None,
                user_params: &BTreeMap::new(),
            },
        )
        .unwrap_err();
        assert!(
            matches!(e, Error::Invalid { ref field, .. } if field == "connectionConfig.sub"),
            "{e}"
        );
    }

    #[test]
    fn metadata_takes_strings_and_booleans_at_dotted_paths() {
        let raw = json!({"instance_url": "https://x", "team": {"id": "T1"}, "n": 3, "ok": true});
        let keys = ["instance_url", "team.id", "n", "ok", "missing"].map(String::from);
        assert_eq!(
            Value::Object(response_metadata(&raw, &keys)),
            json!({"instance_url": "https://x", "team.id": "T1", "ok": true})
        );
    }
}
