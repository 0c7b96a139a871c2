//! Integrations: a provider of the catalog configured for an environment under a unique key,
//! with its OAuth app credentials (client secret encrypted at rest). Table owner: this module.

use crate::{EnvironmentId, IntegrationId};
use chrono::{DateTime, Utc};
use secrecy::SecretString;
use serde_json::{Map, Value};
use sqlx::{FromRow, PgPool};
use uuid::Uuid;

pub mod webhook_routing;

use crate::crypto::Cipher;
use crate::{Error, Result};
use webhook_routing::Routing;

#[derive(Clone, FromRow)]
pub struct Integration {
    pub id: IntegrationId,
    pub uuid: Uuid,
    pub environment_id: EnvironmentId,
    pub unique_key: String,
    pub provider: String,
    pub display_name: Option<String>,
    pub client_id: Option<String>,
    client_secret_encrypted: Option<Vec<u8>>,
    /// Comma-separated.
    pub scopes: Option<String>,
    webhook_secret_encrypted: Option<Vec<u8>>,
    pub forward_webhooks: bool,
    pub custom: Value,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Integration {
    /// Its `custom.webhook_routing` (none when `custom` has none).
    pub fn webhook_routing(&self) -> Result<Routing> {
        match &self.custom {
            Value::Object(custom) => Routing::from_custom(custom),
            _ => Ok(Routing::default()),
        }
    }

    /// The hosts this integration lets connection values name (`custom.allowed_hosts`).
    pub fn allowed_hosts(&self) -> Result<Vec<String>> {
        crate::providers::hosts::allowed_hosts(
            self.custom.get(crate::providers::hosts::ALLOWED_HOSTS_KEY),
        )
    }
}

impl std::fmt::Debug for Integration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Integration")
            .field("unique_key", &self.unique_key)
            .field("provider", &self.provider)
            .finish_non_exhaustive()
    }
}

fn aad(uuid: Uuid, field: &str) -> String {
    format!("integration:{uuid}:{field}")
}

fn open(
    cipher: &Cipher,
    uuid: Uuid,
    field: &str,
    sealed: &Option<Vec<u8>>,
) -> Result<Option<SecretString>> {
    sealed
        .as_deref()
        .map(|s| {
            let plain = cipher.open(s, &aad(uuid, field))?;
            String::from_utf8(plain)
                .map(SecretString::from)
                .map_err(|_| Error::Decrypt)
        })
        .transpose()
}

impl Integration {
    pub fn client_secret(&self, cipher: &Cipher) -> Result<Option<SecretString>> {
        open(
            cipher,
            self.uuid,
            "client_secret",
            &self.client_secret_encrypted,
        )
    }

    pub fn webhook_secret(&self, cipher: &Cipher) -> Result<Option<SecretString>> {
        open(
            cipher,
            self.uuid,
            "webhook_secret",
            &self.webhook_secret_encrypted,
        )
    }

    /// Scopes as a list (the stored form is comma-separated).
    pub fn scope_list(&self) -> Vec<String> {
        self.scopes
            .as_deref()
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    }
}

/// OAuth app credentials of an integration, as given by the user.
#[derive(Clone, Default)]
pub struct AppCredentials {
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub scopes: Option<String>,
    pub webhook_secret: Option<String>,
}

#[derive(Clone, Default)]
pub struct NewIntegration {
    pub unique_key: String,
    pub provider: String,
    pub display_name: Option<String>,
    pub credentials: AppCredentials,
    pub forward_webhooks: Option<bool>,
    pub custom: Map<String, Value>,
}

#[derive(Clone, Default)]
pub struct IntegrationPatch {
    pub unique_key: Option<String>,
    pub display_name: Option<String>,
    pub credentials: Option<AppCredentials>,
    pub forward_webhooks: Option<bool>,
    pub custom: Option<Map<String, Value>>,
}

pub fn check_unique_key(key: &str, field: &str) -> Result<()> {
    let ok = !key.is_empty()
        && key.len() <= 255
        && key
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            field,
            "use 1-255 letters, digits, `_`, `-` or `.`, starting with a letter or digit",
        ))
    }
}

/// The columns, as a literal so queries stay `&'static str` (sqlx's injection guard).
macro_rules! columns {
    () => {
        "id, uuid, environment_id, unique_key, provider, display_name, client_id,
         client_secret_encrypted, scopes, webhook_secret_encrypted, forward_webhooks, custom,
         created_at, updated_at"
    };
}

fn seal(cipher: &Cipher, uuid: Uuid, field: &str, value: &Option<String>) -> Option<Vec<u8>> {
    value
        .as_deref()
        .filter(|v| !v.is_empty())
        .map(|v| cipher.seal(v.as_bytes(), &aad(uuid, field)))
}

fn conflict_on_duplicate(unique_key: &str) -> impl FnOnce(sqlx::Error) -> Error + '_ {
    move |e| match e {
        sqlx::Error::Database(d) if d.is_unique_violation() => Error::Conflict(format!(
            "an integration with unique_key `{unique_key}` already exists"
        )),
        e => e.into(),
    }
}

pub async fn create(
    db: &PgPool,
    cipher: &Cipher,
    environment_id: EnvironmentId,
    new: NewIntegration,
) -> Result<Integration> {
    check_unique_key(&new.unique_key, "unique_key")?;
    Routing::from_custom(&new.custom)?;
    crate::providers::hosts::allowed_hosts(
        new.custom.get(crate::providers::hosts::ALLOWED_HOSTS_KEY),
    )?;
    let uuid = Uuid::new_v4();
    let c = &new.credentials;
    sqlx::query_as(concat!(
        "INSERT INTO integrations (uuid, environment_id, unique_key, provider, display_name,
            client_id, client_secret_encrypted, scopes, webhook_secret_encrypted,
            forward_webhooks, custom)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
         RETURNING ",
        columns!()
    ))
    .bind(uuid)
    .bind(environment_id)
    .bind(&new.unique_key)
    .bind(&new.provider)
    .bind(&new.display_name)
    .bind(&c.client_id)
    .bind(seal(cipher, uuid, "client_secret", &c.client_secret))
    .bind(&c.scopes)
    .bind(seal(cipher, uuid, "webhook_secret", &c.webhook_secret))
    .bind(new.forward_webhooks.unwrap_or(true))
    .bind(Value::Object(new.custom))
    .fetch_one(db)
    .await
    .map_err(conflict_on_duplicate(&new.unique_key))
}

pub async fn list(db: &PgPool, environment_id: EnvironmentId) -> Result<Vec<Integration>> {
    Ok(sqlx::query_as(concat!(
        "SELECT ",
        columns!(),
        " FROM integrations WHERE environment_id = $1 ORDER BY created_at, id"
    ))
    .bind(environment_id)
    .fetch_all(db)
    .await?)
}

pub async fn find(
    db: &PgPool,
    environment_id: EnvironmentId,
    unique_key: &str,
) -> Result<Option<Integration>> {
    Ok(sqlx::query_as(concat!(
        "SELECT ",
        columns!(),
        " FROM integrations WHERE environment_id = $1 AND unique_key = $2"
    ))
    .bind(environment_id)
    .bind(unique_key)
    .fetch_optional(db)
    .await?)
}

pub async fn get_by_id(db: &PgPool, id: IntegrationId) -> Result<Integration> {
    sqlx::query_as(concat!(
        "SELECT ",
        columns!(),
        " FROM integrations WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(db)
    .await?
    .ok_or_else(|| Error::not_found("integration"))
}

/// The integration, or `unknown_provider_config`.
pub async fn get(
    db: &PgPool,
    environment_id: EnvironmentId,
    unique_key: &str,
) -> Result<Integration> {
    find(db, environment_id, unique_key)
        .await?
        .ok_or_else(|| Error::unknown_integration(unique_key))
}

pub async fn update(
    db: &PgPool,
    cipher: &Cipher,
    environment_id: EnvironmentId,
    unique_key: &str,
    patch: IntegrationPatch,
) -> Result<Integration> {
    if let Some(k) = &patch.unique_key {
        check_unique_key(k, "unique_key")?;
    }
    if let Some(custom) = &patch.custom {
        Routing::from_custom(custom)?;
        crate::providers::hosts::allowed_hosts(
            custom.get(crate::providers::hosts::ALLOWED_HOSTS_KEY),
        )?;
    }
    let current = get(db, environment_id, unique_key).await?;
    let uuid = current.uuid;
    let creds = patch.credentials.as_ref();
    let new_key = patch
        .unique_key
        .clone()
        .unwrap_or_else(|| unique_key.to_string());
    sqlx::query_as(concat!(
        "UPDATE integrations SET
            unique_key = $3,
            display_name = COALESCE($4, display_name),
            client_id = CASE WHEN $5 THEN $6 ELSE client_id END,
            client_secret_encrypted = CASE WHEN $5 THEN $7 ELSE client_secret_encrypted END,
            scopes = CASE WHEN $5 THEN $8 ELSE scopes END,
            webhook_secret_encrypted = CASE WHEN $5 THEN $9 ELSE webhook_secret_encrypted END,
            forward_webhooks = COALESCE($10, forward_webhooks),
            custom = COALESCE($11, custom),
            updated_at = now()
         WHERE environment_id = $1 AND unique_key = $2
         RETURNING ",
        columns!()
    ))
    .bind(environment_id)
    .bind(unique_key)
    .bind(&new_key)
    .bind(&patch.display_name)
    .bind(creds.is_some())
    .bind(creds.and_then(|c| c.client_id.clone()))
    .bind(creds.and_then(|c| seal(cipher, uuid, "client_secret", &c.client_secret)))
    .bind(creds.and_then(|c| c.scopes.clone()))
    .bind(creds.and_then(|c| seal(cipher, uuid, "webhook_secret", &c.webhook_secret)))
    .bind(patch.forward_webhooks)
    .bind(patch.custom.map(Value::Object))
    .fetch_optional(db)
    .await
    .map_err(conflict_on_duplicate(&new_key))?
    .ok_or_else(|| Error::unknown_integration(unique_key))
}

/// Deletes the integration and, through the foreign keys, its connections.
/// Key rotation: re-seals under the cipher's current key the client and webhook secrets a
/// previous key sealed, at most `limit` values; returns how many (see
/// [`crate::connections::reseal`]).
pub async fn reseal(db: &PgPool, cipher: &Cipher, limit: u64) -> Result<u64> {
    /// id, uuid, and the sealed client and webhook secrets.
    type SealedRow = (i64, Uuid, Option<Vec<u8>>, Option<Vec<u8>>);
    let rows: Vec<SealedRow> = sqlx::query_as(
        "SELECT id, uuid, client_secret_encrypted, webhook_secret_encrypted FROM integrations
         ORDER BY id",
    )
    .fetch_all(db)
    .await?;
    let mut done = 0u64;
    for (id, uuid, client, webhook) in rows {
        for (field, sql, sealed) in [
            (
                "client_secret",
                "UPDATE integrations SET client_secret_encrypted = $2
                 WHERE id = $1 AND client_secret_encrypted = $3",
                client,
            ),
            (
                "webhook_secret",
                "UPDATE integrations SET webhook_secret_encrypted = $2
                 WHERE id = $1 AND webhook_secret_encrypted = $3",
                webhook,
            ),
        ] {
            if done >= limit {
                return Ok(done);
            }
            let Some(sealed) = sealed else { continue };
            let Some(fresh) = cipher.reseal(&sealed, &aad(uuid, field))? else {
                continue;
            };
            let written = sqlx::query(sql)
                .bind(id)
                .bind(fresh)
                .bind(sealed)
                .execute(db)
                .await?
                .rows_affected();
            done += written;
        }
    }
    Ok(done)
}

pub async fn delete(db: &PgPool, environment_id: EnvironmentId, unique_key: &str) -> Result<()> {
    let deleted =
        sqlx::query("DELETE FROM integrations WHERE environment_id = $1 AND unique_key = $2")
            .bind(environment_id)
            .bind(unique_key)
            .execute(db)
            .await?
            .rows_affected();
    if deleted == 0 {
        return Err(Error::unknown_integration(unique_key));
    }
    Ok(())
}
