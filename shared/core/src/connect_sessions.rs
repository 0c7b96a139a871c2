//! Connect sessions: short-lived tokens (30 minutes) that a backend creates with its secret key
//! and hands to its frontend, so an end user can create a connection (or, with a reconnect
//! session, re-authorize one) through the auth endpoints without the secret key. A session
//! says who the end user is and which integrations may be connected. Only the token's digest is
//! stored. Table owner: this module.

use crate::{ConnectionRowId, EnvironmentId};
use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sqlx::{FromRow, PgPool};

use crate::connections::{EndUser, Organization};
use crate::crypto::token_digest;
use crate::environments::Environment;
use crate::{Error, ErrorCode, Result};

/// Nango's prefix, so tokens look the same to clients that check it.
pub const TOKEN_PREFIX: &str = "nango_connect_session_";
pub const LIFETIME: Duration = Duration::minutes(30);

/// Defaults a session applies when its end user connects one integration (Nango's
/// `integrations_config_defaults` entry).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntegrationDefaults {
    /// OAuth `user_scope` (Slack's user-token scopes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_scopes: Option<String>,
    /// Replaces the authorization parameters the frontend sends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization_params: Option<BTreeMap<String, String>>,
    /// Merged over the connection config the frontend sends (the session wins);
    /// `oauth_scopes_override` replaces the integration's scopes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_config: Option<Map<String, Value>>,
}

/// The connection a reconnect session re-authorizes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReconnectTarget {
    pub provider_config_key: String,
    pub connection_id: String,
}

#[derive(Debug, Clone)]
pub struct ConnectSession {
    pub id: i64,
    pub environment: Environment,
    pub end_user: Option<EndUser>,
    /// `None` allows every integration of the environment.
    pub allowed_integrations: Option<Vec<String>>,
    pub integrations_config_defaults: BTreeMap<String, IntegrationDefaults>,
    /// Given to the connections the session creates.
    pub tags: Map<String, Value>,
    pub webhook_url_override: Option<String>,
    pub reconnect: Option<ReconnectTarget>,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

impl ConnectSession {
    /// Refuses an integration the session does not allow (Nango: `integration_not_allowed`).
    pub fn check_allowed(&self, provider_config_key: &str) -> Result<()> {
        match &self.allowed_integrations {
            Some(allowed) if !allowed.iter().any(|k| k == provider_config_key) => {
                Err(Error::BadRequest {
                    code: ErrorCode::IntegrationNotAllowed,
                    message: format!(
                        "this connect session does not allow integration `{provider_config_key}`"
                    ),
                })
            }
            _ => Ok(()),
        }
    }

    /// The session's defaults for one integration (empty when it has none).
    pub fn defaults_for(&self, provider_config_key: &str) -> IntegrationDefaults {
        self.integrations_config_defaults
            .get(provider_config_key)
            .cloned()
            .unwrap_or_default()
    }
}

/// What `POST /connect/sessions` asks for.
#[derive(Debug, Clone, Default)]
pub struct NewSession {
    /// Required unless `tags` are given (Nango).
    pub end_user: Option<EndUser>,
    /// Stored with the end user.
    pub organization: Option<Organization>,
    /// Empty means every integration.
    pub allowed_integrations: Option<Vec<String>>,
    pub integrations_config_defaults: Option<BTreeMap<String, IntegrationDefaults>>,
    pub tags: Option<BTreeMap<String, String>>,
    pub webhook_url_override: Option<String>,
}

/// What `POST /connect/sessions/reconnect` asks for.
#[derive(Debug, Clone, Default)]
pub struct NewReconnectSession {
    pub connection_id: String,
    /// The connection's integration (unique key).
    pub integration_id: String,
    /// The connection's own end user when absent.
    pub end_user: Option<EndUser>,
    pub organization: Option<Organization>,
    pub integrations_config_defaults: Option<BTreeMap<String, IntegrationDefaults>>,
    pub tags: Option<BTreeMap<String, String>>,
    pub webhook_url_override: Option<String>,
}

/// A token as Nango spells them: the prefix and 64 hex digits (256 random bits).
fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("{TOKEN_PREFIX}{}", hex::encode(bytes))
}

fn check_end_user(user: &EndUser) -> Result<()> {
    if user.id.is_empty() || user.id.len() > 255 {
        return Err(Error::invalid("end_user.id", "must be 1-255 characters"));
    }
    if let Some(email) = &user.email
        && (email.len() > 255 || !email.contains('@'))
    {
        return Err(Error::invalid("end_user.email", "must be an email address"));
    }
    if user.display_name.as_ref().is_some_and(|n| n.len() > 255) {
        return Err(Error::invalid(
            "end_user.display_name",
            "must be at most 255 characters",
        ));
    }
    if let Some((key, _)) = user.tags.iter().flatten().find(|(_, v)| !v.is_string()) {
        return Err(Error::invalid(
            format!("end_user.tags.{key}"),
            "tag values must be strings",
        ));
    }
    Ok(())
}

fn check_webhook_url(url: Option<String>) -> Result<Option<String>> {
    match url.filter(|u| !u.is_empty()) {
        None => Ok(None),
        Some(u) => match url::Url::parse(&u) {
            Ok(parsed) if matches!(parsed.scheme(), "http" | "https") => Ok(Some(u)),
            _ => Err(Error::invalid(
                "webhook_url_override",
                "expected an http(s) URL",
            )),
        },
    }
}

/// The tags a session gives its connections: the end user's identity (as Nango names it), the
/// end user's own tags, then the session's `tags`, which win; keys lower-cased, as
/// [`connections::normalize_tags`](crate::connections::normalize_tags) stores them.
fn session_tags(
    end_user: Option<&EndUser>,
    tags: Option<&BTreeMap<String, String>>,
) -> Map<String, Value> {
    let mut out = Map::new();
    let mut set = |key: &str, value: Option<&String>| {
        if let Some(v) = value.filter(|v| !v.is_empty()) {
            out.insert(key.to_string(), Value::String(v.clone()));
        }
    };
    if let Some(user) = end_user {
        set("end_user_id", Some(&user.id));
        set("end_user_email", user.email.as_ref());
        set("end_user_display_name", user.display_name.as_ref());
        if let Some(org) = &user.organization {
            set("organization_id", Some(&org.id));
            set("organization_display_name", org.display_name.as_ref());
        }
    }
    if let Some(user_tags) = end_user.and_then(|u| u.tags.as_ref()) {
        for (k, v) in user_tags {
            out.insert(k.to_lowercase(), v.clone());
        }
    }
    for (k, v) in tags.into_iter().flatten() {
        out.insert(k.to_lowercase(), Value::String(v.clone()));
    }
    out
}

/// Fails naming the first key of `keys` that is not an integration of the environment.
async fn check_integrations_exist<'k>(
    db: &PgPool,
    environment_id: EnvironmentId,
    keys: impl Iterator<Item = (String, &'k str)>,
) -> Result<()> {
    let keys: Vec<(String, &str)> = keys.collect();
    if keys.is_empty() {
        return Ok(());
    }
    let names: Vec<&str> = keys.iter().map(|(_, k)| *k).collect();
    let existing: Vec<(String,)> = sqlx::query_as(
        "SELECT unique_key FROM integrations WHERE environment_id = $1 AND unique_key = ANY($2)",
    )
    .bind(environment_id)
    .bind(&names)
    .fetch_all(db)
    .await?;
    match keys
        .iter()
        .find(|(_, k)| !existing.iter().any(|(e,)| e == k))
    {
        Some((field, key)) => Err(Error::invalid(
            field.clone(),
            format!("integration `{key}` does not exist in this environment"),
        )),
        None => Ok(()),
    }
}

fn with_organization(
    end_user: Option<EndUser>,
    organization: Option<Organization>,
) -> Option<EndUser> {
    end_user.map(|mut u| {
        if organization.is_some() {
            u.organization = organization;
        }
        u
    })
}

struct Insert {
    environment_id: EnvironmentId,
    end_user: Option<EndUser>,
    allowed_integrations: Option<Vec<String>>,
    defaults: BTreeMap<String, IntegrationDefaults>,
    tags: Map<String, Value>,
    webhook_url_override: Option<String>,
    reconnect_connection_id: Option<ConnectionRowId>,
}

async fn insert(db: &PgPool, row: Insert) -> Result<(String, ConnectSession)> {
    let token = new_token();
    let (id,): (i64,) = sqlx::query_as(
        "INSERT INTO connect_sessions (token_hash, environment_id, end_user, allowed_integrations,
            integrations_config_defaults, tags, webhook_url_override, reconnect_connection_id,
            expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, now() + make_interval(secs => $9))
         RETURNING id",
    )
    .bind(token_digest(&token))
    .bind(row.environment_id)
    .bind(
        row.end_user
            .as_ref()
            .map(|u| serde_json::to_value(u).expect("end user serializes")),
    )
    .bind(&row.allowed_integrations)
    .bind(serde_json::to_value(&row.defaults).expect("defaults serialize"))
    .bind(Value::Object(row.tags))
    .bind(&row.webhook_url_override)
    .bind(row.reconnect_connection_id)
    .bind(LIFETIME.num_seconds() as f64)
    .fetch_one(db)
    .await?;
    let session = find_by_id(db, id, false)
        .await?
        .ok_or_else(|| Error::Internal("connect session vanished after insert".into()))?;
    Ok((token, session))
}

/// Creates a session; returns its token (shown once) and the session.
pub async fn create(
    db: &PgPool,
    environment_id: EnvironmentId,
    new: NewSession,
) -> Result<(String, ConnectSession)> {
    if new.end_user.is_none() && new.tags.is_none() {
        return Err(Error::invalid(
            "end_user",
            "is required unless tags are given",
        ));
    }
    if let Some(user) = &new.end_user {
        check_end_user(user)?;
    }
    let webhook_url_override = check_webhook_url(new.webhook_url_override)?;
    let allowed = new.allowed_integrations.filter(|a| !a.is_empty());
    let defaults = new.integrations_config_defaults.unwrap_or_default();
    check_integrations_exist(
        db,
        environment_id,
        allowed
            .iter()
            .flatten()
            .enumerate()
            .map(|(i, k)| (format!("allowed_integrations[{i}]"), k.as_str()))
            .chain(
                defaults
                    .keys()
                    .map(|k| (format!("integrations_config_defaults.{k}"), k.as_str())),
            ),
    )
    .await?;
    let end_user = with_organization(new.end_user, new.organization);
    insert(
        db,
        Insert {
            environment_id,
            tags: session_tags(end_user.as_ref(), new.tags.as_ref()),
            end_user,
            allowed_integrations: allowed,
            defaults,
            webhook_url_override,
            reconnect_connection_id: None,
        },
    )
    .await
}

/// Creates a session that re-authorizes one existing connection of the environment, and only
/// that one.
pub async fn create_reconnect(
    db: &PgPool,
    environment_id: EnvironmentId,
    new: NewReconnectSession,
) -> Result<(String, ConnectSession)> {
    if let Some(user) = &new.end_user {
        check_end_user(user)?;
    }
    let webhook_url_override = check_webhook_url(new.webhook_url_override)?;
    let connection: Option<(ConnectionRowId, Option<Value>)> = sqlx::query_as(
        "SELECT c.id, c.end_user FROM connections c JOIN integrations i ON i.id = c.integration_id
         WHERE c.environment_id = $1 AND i.unique_key = $2 AND c.connection_id = $3",
    )
    .bind(environment_id)
    .bind(&new.integration_id)
    .bind(&new.connection_id)
    .fetch_optional(db)
    .await?;
    let Some((connection_row, stored_end_user)) = connection else {
        return Err(Error::NotFound {
            code: ErrorCode::UnknownConnection,
            message: format!(
                "connection `{}` of integration `{}` does not exist in this environment",
                new.connection_id, new.integration_id
            ),
        });
    };
    let defaults = new.integrations_config_defaults.unwrap_or_default();
    check_integrations_exist(
        db,
        environment_id,
        defaults
            .keys()
            .map(|k| (format!("integrations_config_defaults.{k}"), k.as_str())),
    )
    .await?;
    let end_user = with_organization(new.end_user, new.organization)
        .or_else(|| stored_end_user.and_then(|v| serde_json::from_value(v).ok()));
    insert(
        db,
        Insert {
            environment_id,
            tags: session_tags(end_user.as_ref(), new.tags.as_ref()),
            end_user,
            allowed_integrations: Some(vec![new.integration_id]),
            defaults,
            webhook_url_override,
            reconnect_connection_id: Some(connection_row),
        },
    )
    .await
}

#[derive(FromRow)]
struct Row {
    id: i64,
    environment_id: EnvironmentId,
    environment_uuid: uuid::Uuid,
    environment_name: String,
    end_user: Option<Value>,
    allowed_integrations: Option<Vec<String>>,
    integrations_config_defaults: Value,
    tags: Value,
    webhook_url_override: Option<String>,
    reconnect_integration: Option<String>,
    reconnect_connection_id: Option<String>,
    created_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
}

impl From<Row> for ConnectSession {
    fn from(r: Row) -> Self {
        let reconnect = match (r.reconnect_integration, r.reconnect_connection_id) {
            (Some(provider_config_key), Some(connection_id)) => Some(ReconnectTarget {
                provider_config_key,
                connection_id,
            }),
            _ => None,
        };
        ConnectSession {
            id: r.id,
            environment: Environment {
                id: r.environment_id,
                uuid: r.environment_uuid,
                name: r.environment_name,
            },
            end_user: r.end_user.and_then(|v| serde_json::from_value(v).ok()),
            allowed_integrations: r.allowed_integrations,
            integrations_config_defaults: serde_json::from_value(r.integrations_config_defaults)
                .unwrap_or_default(),
            tags: match r.tags {
                Value::Object(m) => m,
                _ => Map::new(),
            },
            webhook_url_override: r.webhook_url_override,
            reconnect,
            created_at: r.created_at,
            expires_at: r.expires_at,
        }
    }
}

/// The session query, with `condition` on `s` (bound to `$1`) and `$2` = leave out expired
/// sessions; a literal so queries stay `&'static str` (sqlx's injection guard).
macro_rules! select {
    ($condition:literal) => {
        concat!(
            "SELECT s.id, s.environment_id, e.uuid AS environment_uuid,
                    e.name AS environment_name, s.end_user, s.allowed_integrations,
                    s.integrations_config_defaults, s.tags, s.webhook_url_override,
                    i.unique_key AS reconnect_integration,
                    c.connection_id AS reconnect_connection_id, s.created_at, s.expires_at
             FROM connect_sessions s
             JOIN environments e ON e.id = s.environment_id
             LEFT JOIN connections c ON c.id = s.reconnect_connection_id
             LEFT JOIN integrations i ON i.id = c.integration_id
             WHERE ",
            $condition,
            " AND ($2 = false OR s.expires_at > now())"
        )
    };
}

async fn find_by_id(db: &PgPool, id: i64, live: bool) -> Result<Option<ConnectSession>> {
    Ok(sqlx::query_as::<_, Row>(select!("s.id = $1"))
        .bind(id)
        .bind(live)
        .fetch_optional(db)
        .await?
        .map(Into::into))
}

/// The live session of `token`; an unknown, malformed or expired token is
/// [`Error::Unauthorized`].
pub async fn authenticate(db: &PgPool, token: &str) -> Result<ConnectSession> {
    if !token.starts_with(TOKEN_PREFIX) {
        return Err(Error::Unauthorized(format!(
            "malformed connect session token; expected `{TOKEN_PREFIX}…`"
        )));
    }
    let row: Option<Row> = sqlx::query_as(select!("s.token_hash = $1"))
        .bind(token_digest(token))
        .bind(true)
        .fetch_optional(db)
        .await?;
    row.map(Into::into)
        .ok_or_else(|| Error::Unauthorized("unknown or expired connect session token".into()))
}

/// A session by id, expired or not: an OAuth flow started while the session was live may end
/// after it expired.
pub async fn get_by_id(db: &PgPool, id: i64) -> Result<ConnectSession> {
    find_by_id(db, id, false)
        .await?
        .ok_or_else(|| Error::not_found("connect session"))
}

/// Deletes a session; the OAuth flows it started are abandoned with it.
pub async fn delete(db: &PgPool, id: i64) -> Result<()> {
    sqlx::query("DELETE FROM connect_sessions WHERE id = $1")
        .bind(id)
        .execute(db)
        .await?;
    Ok(())
}

/// Deletes sessions that expired more than `grace` ago (none is usable after it expires).
pub async fn purge_expired(db: &PgPool, grace: Duration) -> Result<u64> {
    Ok(sqlx::query(
        "DELETE FROM connect_sessions WHERE expires_at < now() - make_interval(secs => $1)",
    )
    .bind(grace.num_seconds() as f64)
    .execute(db)
    .await?
    .rows_affected())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tokens_look_like_nangos() {
        let t = new_token();
        let rest = t.strip_prefix(TOKEN_PREFIX).unwrap();
        assert_eq!(rest.len(), 64);
        assert!(rest.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(t, new_token());
    }

    #[test]
    fn tags_come_from_the_end_user_then_the_session() {
        let user: EndUser = serde_json::from_value(json!({
            "id": "u1", "email": "a@b.c", "tags": {"Plan": "pro"},
            "organization": {"id": "o1"}
        }))
        .unwrap();
        let tags = session_tags(
            Some(&user),
            Some(&BTreeMap::from([("Plan".to_string(), "team".to_string())])),
        );
        assert_eq!(
            Value::Object(tags),
            json!({"end_user_id": "u1", "end_user_email": "a@b.c", "organization_id": "o1",
                   "plan": "team"})
        );
    }

    #[test]
    fn end_users_are_checked_field_by_field() {
        let bad = |v: Value| {
            let user: EndUser = serde_json::from_value(v).unwrap();
            match check_end_user(&user).unwrap_err() {
                Error::Invalid { field, .. } => field,
                e => panic!("{e}"),
            }
        };
        assert_eq!(bad(json!({"id": ""})), "end_user.id");
        assert_eq!(bad(json!({"id": "u", "email": "nope"})), "end_user.email");
        assert_eq!(bad(json!({"id": "u", "tags": {"a": 1}})), "end_user.tags.a");
    }
}
