//! Creating connections through the auth flows Nango's frontend SDK drives: OAuth 2
//! authorization code ([`oauth2`]); OAuth 2 client credentials, API key and basic auth
//! ([`direct`]). A flow is started by a backend with its secret key or by a frontend with a
//! connect session token ([`Caller`]); [`resolve`] decides, the same way for every flow, which
//! integration and connection id a request may touch and what the new connection gets from the
//! session (end user, tags, webhook URL override, connection config defaults).

pub mod direct;
pub mod oauth2;
mod verify;

use serde_json::{Map, Value};

use crate::connect_sessions::{ConnectSession, IntegrationDefaults};
use crate::connections::{self, Credentials, EndUser, NewConnection};
use crate::context::Context;
use crate::environments::Environment;
use crate::integrations::{self, Integration};
use crate::providers::{AuthMode, FieldSchema, Provider, hosts};
use crate::webhooks::{self, AuthEvent, AuthOperation};
use crate::{Error, ErrorCode, Result};

/// Who starts an auth flow.
#[derive(Debug, Clone)]
pub enum Caller {
    /// A backend, with the environment's secret key: it names the connection id.
    SecretKey(Environment),
    /// A frontend, with a connect session token: the session names the end user, limits the
    /// integrations and chooses the connection id.
    ConnectSession(Box<ConnectSession>),
}

impl Caller {
    pub fn environment(&self) -> &Environment {
        match self {
            Caller::SecretKey(env) => env,
            Caller::ConnectSession(s) => &s.environment,
        }
    }

    fn session(&self) -> Option<&ConnectSession> {
        match self {
            Caller::SecretKey(_) => None,
            Caller::ConnectSession(s) => Some(s),
        }
    }
}

/// What every auth request names, from its path and query string.
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub provider_config_key: String,
    /// `connection_id`: chosen by a secret-key caller (a new UUID when absent); a connect
    /// session chooses it itself and refuses one from the request.
    pub connection_id: Option<String>,
    /// `params[...]`: the connection config.
    pub params: Map<String, Value>,
}

/// A connection an auth flow stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub provider_config_key: String,
    pub connection_id: String,
    pub operation: AuthOperation,
}

/// The integration, provider and connection id a request resolved to, with what the connection
/// gets.
struct Target<'c> {
    integration: Integration,
    provider: &'c Provider,
    connection_id: String,
    connection_config: Map<String, Value>,
    /// The connect session's defaults for this integration.
    defaults: IntegrationDefaults,
    end_user: Option<EndUser>,
    tags: Map<String, Value>,
    webhook_url_override: Option<String>,
    connect_session_id: Option<i64>,
}

/// Resolves `request` for a flow that creates `mode` connections: the integration must exist in
/// the caller's environment and use `mode`, and a connect session must allow it.
async fn resolve<'c>(
    ctx: &'c Context,
    caller: &Caller,
    request: &Request,
    mode: AuthMode,
) -> Result<Target<'c>> {
    let session = caller.session();
    if let Some(session) = session {
        if request.connection_id.is_some() {
            return Err(Error::invalid(
                "connection_id",
                "is chosen by the connect session; leave it out",
            ));
        }
        // Before the lookup, so a session cannot probe which integrations exist.
        session.check_allowed(&request.provider_config_key)?;
    }
    let integration = integrations::get(
        &ctx.db,
        caller.environment().id,
        &request.provider_config_key,
    )
    .await?;
    let provider = ctx
        .providers
        .get(&integration.provider)
        .ok_or_else(|| Error::unknown_provider(&integration.provider))?;
    if provider.auth_mode != mode {
        return Err(Error::BadRequest {
            code: ErrorCode::InvalidAuthMode,
            message: format!(
                "integration `{}` uses provider `{}`, whose auth mode is {}; this endpoint creates {} connections",
                integration.unique_key, integration.provider, provider.auth_mode, mode
            ),
        });
    }
    let mut connection_config = request.params.clone();
    if session.is_some() {
        // Automated fields feed the proxy's base URL (instance_url, api_domain, ...): an end
        // user must not be able to point them elsewhere.
        if let Some((name, _)) = provider
            .connection_config
            .iter()
            .find(|(name, f)| f.automated && connection_config.contains_key(*name))
        {
            return Err(Error::invalid(
                format!("params[{name}]"),
                "is filled in by the provider; leave it out",
            ));
        }
    }
    let Some(session) = session else {
        let connection_id = match &request.connection_id {
            Some(id) => {
                connections::check_connection_id(id)?;
                id.clone()
            }
            None => uuid::Uuid::new_v4().to_string(),
        };
        return Ok(Target {
            integration,
            provider,
            connection_id,
            connection_config,
            defaults: IntegrationDefaults::default(),
            end_user: None,
            tags: Map::new(),
            webhook_url_override: None,
            connect_session_id: None,
        });
    };
    let connection_id = match &session.reconnect {
        Some(target) => target.connection_id.clone(),
        None => uuid::Uuid::new_v4().to_string(),
    };
    let defaults = session.defaults_for(&integration.unique_key);
    if let Some(config) = &defaults.connection_config {
        connection_config.extend(config.clone());
    }
    Ok(Target {
        integration,
        provider,
        connection_id,
        connection_config,
        defaults,
        end_user: session.end_user.clone(),
        tags: session.tags.clone(),
        webhook_url_override: session.webhook_url_override.clone(),
        connect_session_id: Some(session.id),
    })
}

/// Checks `config` against the provider's `connection_config` fields: required ones present,
/// enumerations, patterns and formats respected; missing ones with a default get it. Automated
/// fields are the provider's to fill (from the token response or the callback), so none is
/// required. The hosts these values put in URLs are checked by [`check_hosts`].
fn check_connection_config(provider: &Provider, config: &mut Map<String, Value>) -> Result<()> {
    for (name, field) in &provider.connection_config {
        if field.automated {
            continue;
        }
        let param = || format!("params[{name}]");
        let value = match config.get(name) {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            Some(Value::String(_)) | None | Some(Value::Null) => {
                if let Some(default) = &field.default_value {
                    config.insert(name.clone(), Value::String(default.clone()));
                } else if !field.optional {
                    return Err(Error::invalid(
                        param(),
                        format!(
                            "is required by this provider ({})",
                            field.title.as_deref().unwrap_or(name)
                        ),
                    ));
                }
                continue;
            }
            Some(other) => other.to_string(),
        };
        if !field.allowed.is_empty() && !field.allowed.contains(&value) {
            return Err(Error::invalid(
                param(),
                format!("must be one of {}", field.allowed.join(", ")),
            ));
        }
        check_value(field, &value).map_err(|m| Error::invalid(param(), m))?;
    }
    Ok(())
}

/// Every catalog URL the target's connection values fill in stays on the provider's hosts
/// ([`hosts::check_config`]); a refusal names the `params[...]` value.
fn check_hosts(target: &Target<'_>) -> Result<()> {
    hosts::check_config(
        &target.integration.provider,
        target.provider,
        &target.integration.allowed_hosts()?,
        &target.connection_config,
        &|k| format!("params[{k}]"),
    )
}

/// Accepts values a provider returned (token response, callback) into the connection config:
/// each must respect its field's pattern and format, and none may move a catalog URL to
/// another host.
fn accept_provider_values(target: &mut Target<'_>, values: Map<String, Value>) -> Result<()> {
    let field = |k: &str| format!("the provider's `{k}`");
    for (name, value) in &values {
        if let (Some(schema), Value::String(text)) =
            (target.provider.connection_config.get(name), value)
        {
            check_value(schema, text).map_err(|m| Error::invalid(field(name), m))?;
        }
    }
    target.connection_config.extend(values);
    hosts::check_config(
        &target.integration.provider,
        target.provider,
        &target.integration.allowed_hosts()?,
        &target.connection_config,
        &field,
    )
}

/// How a value breaks its field's `pattern` or `format`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValueProblem {
    /// It does not match the field's regular expression.
    Pattern(String),
    /// It is not a `hostname`, `uri`, `uuid` or `email`, as the field's format says.
    Format(String),
}

impl std::fmt::Display for ValueProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ValueProblem::Pattern(p) => write!(f, "does not match the expected format `{p}`"),
            ValueProblem::Format(format) => {
                write!(f, "must be a {format} (the catalog's `format`)")
            }
        }
    }
}

/// A field's `pattern` and `format` (`prefix` and `suffix` only adorn the Connect UI's input).
/// The auth flows refuse connection config values with a problem; the Connect UI also checks
/// credential fields with it before it sends them.
pub fn value_problem(field: &FieldSchema, value: &str) -> Option<ValueProblem> {
    // Catalog patterns are JavaScript regular expressions; the few regex-lite cannot compile
    // (look-arounds) are left to the provider, and the host rules still hold for them.
    if let Some(pattern) = &field.pattern
        && let Ok(re) = regex_lite::Regex::new(pattern)
        && !re.is_match(value)
    {
        return Some(ValueProblem::Pattern(pattern.clone()));
    }
    let ok = match field.format.as_deref() {
        Some("hostname") => hosts::is_hostname(value),
        Some("uri") => url::Url::parse(value).is_ok_and(|u| u.has_host()),
        Some("uuid") => uuid::Uuid::parse_str(value).is_ok(),
        Some("email") => value
            .split_once('@')
            .is_some_and(|(user, domain)| !user.is_empty() && hosts::is_hostname(domain)),
        _ => true,
    };
    (!ok).then(|| ValueProblem::Format(field.format.clone().unwrap_or_default()))
}

fn check_value(field: &FieldSchema, value: &str) -> std::result::Result<(), String> {
    value_problem(field, value).map_or(Ok(()), |p| Err(p.to_string()))
}

/// The scopes to ask for, joined with the provider's separator: `override_scopes`
/// (comma-separated, Nango's `oauth_scopes_override`) when given, else the integration's, else
/// the provider's defaults.
fn scopes(target: &Target<'_>, override_scopes: Option<&str>) -> String {
    let list: Vec<String> = match override_scopes {
        Some(s) => s
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
        None => {
            let own = target.integration.scope_list();
            if own.is_empty() {
                target.provider.default_scopes.clone()
            } else {
                own
            }
        }
    };
    target.provider.join_scopes(&list)
}

/// Stores the connection a flow authorized and sends the auth webhook.
async fn store(
    ctx: &Context,
    environment: &Environment,
    target: Target<'_>,
    credentials: Credentials,
) -> Result<Outcome> {
    let (connection, created) = connections::upsert(
        &ctx.db,
        &ctx.cipher,
        &target.integration,
        NewConnection {
            connection_id: target.connection_id,
            credentials,
            connection_config: target.connection_config,
            secret_config: ctx
                .providers
                .get(&target.integration.provider)
                .map(|p| p.secret_config_fields())
                .unwrap_or_default(),
            metadata: None,
            end_user: target.end_user,
            tags: target.tags,
            webhook_url_override: target.webhook_url_override,
        },
    )
    .await?;
    crate::syncs::connection_stored(ctx, connection.id).await;
    let operation = if created {
        AuthOperation::Creation
    } else {
        AuthOperation::Override
    };
    webhooks::emit_auth(
        ctx,
        &AuthEvent::for_connection(
            environment,
            &connection,
            target.provider.auth_mode.as_str(),
            operation,
        ),
    )
    .await;
    tracing::info!(
        integration = %connection.provider_config_key,
        connection = %connection.connection_id,
        operation = operation.as_str(),
        "connection authorized"
    );
    Ok(Outcome {
        provider_config_key: connection.provider_config_key,
        connection_id: connection.connection_id,
        operation,
    })
}

/// Deletes OAuth and connect sessions that expired more than an hour ago: none of them can be
/// used any more. Run by the scheduler.
pub async fn purge_expired_sessions(ctx: &Context) -> Result<u64> {
    let grace = chrono::Duration::hours(1);
    Ok(oauth2::purge_expired(&ctx.db, grace).await?
        + crate::connect_sessions::purge_expired(&ctx.db, grace).await?)
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

    #[test]
    fn connection_config_is_checked_against_the_catalog() {
        let p = provider(
            "p:\n  display_name: P\n  auth_mode: API_KEY\n  connection_config:\n    subdomain:\n      type: string\n      pattern: ^[a-z]+$\n    region:\n      type: string\n      enum: [eu, us]\n      default_value: us\n    instance_url:\n      type: string\n      automated: true\n",
        );
        let mut config = Map::new();
        let e = check_connection_config(&p, &mut config).unwrap_err();
        assert!(
            matches!(e, Error::Invalid { ref field, .. } if field == "params[subdomain]"),
            "{e}"
        );

        config.insert("subdomain".into(), json!("Bad!"));
        let e = check_connection_config(&p, &mut config).unwrap_err();
        assert!(e.to_string().contains("expected format"), "{e}");

        config.insert("subdomain".into(), json!("acme"));
        check_connection_config(&p, &mut config).unwrap();
        assert_eq!(config["region"], "us");

        config.insert("region".into(), json!("apac"));
        let e = check_connection_config(&p, &mut config).unwrap_err();
        assert!(matches!(e, Error::Invalid { ref field, .. } if field == "params[region]"));
    }

    fn field(yaml: &str) -> FieldSchema {
        serde_saphyr::from_str(yaml).unwrap()
    }

    #[test]
    fn values_respect_the_catalogs_pattern_and_format() {
        let sub = field("type: string\npattern: ^[a-z]+$\nprefix: https://\n");
        let e = check_value(&sub, "Bad!").unwrap_err();
        assert!(e.contains("expected format"), "{e}");
        // `prefix` is an adornment the Connect UI shows, not a check.
        assert!(check_value(&sub, "acme").is_ok());

        let host = field("type: string\nformat: hostname\n");
        assert!(check_value(&host, "acme.us.auth0.com").is_ok());
        for bad in ["evil.com/x#", "127.0.0.1:8080", "a b", "user@host"] {
            assert!(check_value(&host, bad).is_err(), "{bad}");
        }
        let uri = field("type: string\nformat: uri\n");
        assert!(check_value(&uri, "https://acme.my.salesforce.com").is_ok());
        assert!(check_value(&uri, "not a uri").is_err());
        let id = field("type: string\nformat: uuid\n");
        assert!(check_value(&id, "6f1c2b1e-8d7a-4a55-9d40-1b9a1e0c3a11").is_ok());
        assert!(check_value(&id, "x").is_err());
        let mail = field("type: string\nformat: email\n");
        assert!(check_value(&mail, "a@b.example").is_ok());
        assert!(check_value(&mail, "a@").is_err());
    }
}
