//! Connections: one end user's account on an integration, with its credentials encrypted at
//! rest (AES-256-GCM, bound to the row). Table owner: this module.

pub mod credentials;

use crate::{ConnectionRowId, EnvironmentId, IntegrationId};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sqlx::{FromRow, PgExecutor, PgPool};
use uuid::Uuid;

pub use credentials::{Credentials, OAuth2Token};

use crate::crypto::Cipher;
use crate::integrations::{self, Integration};
use crate::{Error, ErrorCode, Result};

/// The end user a connection belongs to (Nango's `end_user`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EndUser {
    pub id: String,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub tags: Option<Map<String, Value>>,
    #[serde(default)]
    pub organization: Option<Organization>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Organization {
    pub id: String,
    #[serde(default)]
    pub display_name: Option<String>,
}

/// A connection with its credentials decrypted.
#[derive(Debug, Clone)]
pub struct Connection {
    pub id: ConnectionRowId,
    pub uuid: Uuid,
    pub environment_id: EnvironmentId,
    pub integration_id: IntegrationId,
    pub provider_config_key: String,
    pub provider: String,
    pub connection_id: String,
    pub credentials: Credentials,
    /// Decrypted: the fields the catalog marks `secret` are stored sealed.
    pub connection_config: Map<String, Value>,
    /// The names of the `connection_config` fields stored sealed (secrets, kept out of logs).
    pub secret_config: Vec<String>,
    pub metadata: Option<Value>,
    pub end_user: Option<EndUser>,
    pub tags: Map<String, Value>,
    pub webhook_url_override: Option<String>,
    pub last_fetched_at: Option<DateTime<Utc>>,
    pub refresh_failures: i32,
    pub refresh_error: Option<String>,
    pub last_refresh_at: Option<DateTime<Utc>>,
    pub last_refresh_failure_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A connection without credentials, for lists.
#[derive(Debug, Clone)]
pub struct ConnectionSummary {
    pub id: ConnectionRowId,
    pub provider_config_key: String,
    pub provider: String,
    pub connection_id: String,
    pub metadata: Option<Value>,
    pub end_user: Option<EndUser>,
    pub tags: Map<String, Value>,
    pub refresh_error: Option<String>,
    pub created_at: DateTime<Utc>,
}

#[derive(FromRow)]
struct Row {
    id: ConnectionRowId,
    uuid: Uuid,
    environment_id: EnvironmentId,
    integration_id: IntegrationId,
    provider_config_key: String,
    provider: String,
    connection_id: String,
    credentials_encrypted: Vec<u8>,
    connection_config: Value,
    metadata: Option<Value>,
    end_user: Option<Value>,
    tags: Value,
    webhook_url_override: Option<String>,
    last_fetched_at: Option<DateTime<Utc>>,
    refresh_failures: i32,
    refresh_error: Option<String>,
    last_refresh_at: Option<DateTime<Utc>>,
    last_refresh_failure_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

/// The columns of [`Row`], as a literal so queries stay `&'static str`.
macro_rules! columns {
    () => {
        "c.id, c.uuid, c.environment_id, c.integration_id, i.unique_key AS provider_config_key,
         i.provider, c.connection_id, c.credentials_encrypted, c.connection_config, c.metadata,
         c.end_user, c.tags, c.webhook_url_override, c.last_fetched_at, c.refresh_failures,
         c.refresh_error, c.last_refresh_at, c.last_refresh_failure_at, c.created_at,
         c.updated_at"
    };
}

fn credentials_aad(uuid: Uuid) -> String {
    format!("connection:{uuid}:credentials")
}

fn config_aad(uuid: Uuid, field: &str) -> String {
    format!("connection:{uuid}:config:{field}")
}

/// The key of the object that stands for a sealed `connection_config` value in the row:
/// `{"lasso_sealed": "<base64 of the sealed JSON value>"}`.
pub const SEALED_KEY: &str = "lasso_sealed";

/// `config` with the values of the `secret` fields sealed (bound to the row and the field).
fn seal_config(
    cipher: &Cipher,
    uuid: Uuid,
    mut config: Map<String, Value>,
    secret: &[String],
) -> Map<String, Value> {
    use base64::Engine;
    for (field, value) in config.iter_mut() {
        if secret.contains(field) && !value.is_null() {
            let sealed = cipher.seal_json(value, &config_aad(uuid, field));
            *value = serde_json::json!({
                SEALED_KEY: base64::engine::general_purpose::STANDARD.encode(sealed)
            });
        }
    }
    config
}

/// The sealed text of a stored value, when it is one.
fn sealed_text(value: &Value) -> Option<&str> {
    match value {
        Value::Object(m) if m.len() == 1 => m.get(SEALED_KEY)?.as_str(),
        _ => None,
    }
}

/// The stored `config` with its sealed values opened, and the names of those fields.
fn open_config(
    cipher: &Cipher,
    uuid: Uuid,
    config: Map<String, Value>,
) -> Result<(Map<String, Value>, Vec<String>)> {
    use base64::Engine;
    let mut secret = Vec::new();
    let mut out = Map::with_capacity(config.len());
    for (field, value) in config {
        let value = match sealed_text(&value) {
            Some(text) => {
                let sealed = base64::engine::general_purpose::STANDARD
                    .decode(text)
                    .map_err(|_| Error::Decrypt)?;
                secret.push(field.clone());
                cipher.open_json(&sealed, &config_aad(uuid, &field))?
            }
            None => value,
        };
        out.insert(field, value);
    }
    Ok((out, secret))
}

fn object(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

fn end_user(v: Option<Value>) -> Option<EndUser> {
    v.and_then(|v| serde_json::from_value(v).ok())
}

impl Row {
    fn decrypt(self, cipher: &Cipher) -> Result<Connection> {
        let plain = cipher.open_json(&self.credentials_encrypted, &credentials_aad(self.uuid))?;
        let credentials = serde_json::from_value(plain).map_err(|_| Error::Decrypt)?;
        let (connection_config, secret_config) =
            open_config(cipher, self.uuid, object(self.connection_config))?;
        Ok(Connection {
            id: self.id,
            uuid: self.uuid,
            environment_id: self.environment_id,
            integration_id: self.integration_id,
            provider_config_key: self.provider_config_key,
            provider: self.provider,
            connection_id: self.connection_id,
            credentials,
            connection_config,
            secret_config,
            metadata: self.metadata,
            end_user: end_user(self.end_user),
            tags: object(self.tags),
            webhook_url_override: self.webhook_url_override,
            last_fetched_at: self.last_fetched_at,
            refresh_failures: self.refresh_failures,
            refresh_error: self.refresh_error,
            last_refresh_at: self.last_refresh_at,
            last_refresh_failure_at: self.last_refresh_failure_at,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

impl Connection {
    /// Every secret value of the connection (its credentials and its `secret` config fields),
    /// for scrubbing them out of logs and errors.
    pub fn secrets(&self) -> Vec<String> {
        let config = self
            .secret_config
            .iter()
            .filter_map(|field| self.connection_config.get(field))
            .map(|v| match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            });
        self.credentials
            .secrets()
            .into_iter()
            .map(str::to_string)
            .chain(config)
            .collect()
    }
}

fn end_user_json(user: &Option<EndUser>) -> Value {
    match user {
        None => Value::Null,
        Some(u) => serde_json::json!({
            "id": u.id,
            "email": u.email,
            "display_name": u.display_name,
            "tags": u.tags,
            "organization": u.organization.as_ref().map(|o| serde_json::json!({"id": o.id, "display_name": o.display_name})),
        }),
    }
}

/// Nango's `errors` list: an `auth` error while refreshing fails.
pub fn errors_json(refresh_error: &Option<String>) -> Value {
    match refresh_error {
        Some(_) => serde_json::json!([{"type": "auth", "log_id": ""}]),
        None => serde_json::json!([]),
    }
}

/// Nango's `ApiPublicConnectionFull`: the connection with `credentials` (the API hides the
/// refresh token unless asked; scripts get it whole).
pub fn public_json(c: &Connection, credentials: &Credentials) -> Value {
    serde_json::json!({
        "id": c.id,
        "connection_id": c.connection_id,
        "provider_config_key": c.provider_config_key,
        "provider": c.provider,
        "connection_config": c.connection_config,
        "created_at": c.created_at,
        "updated_at": c.updated_at,
        "last_fetched_at": c.last_fetched_at,
        "metadata": c.metadata,
        "errors": errors_json(&c.refresh_error),
        "end_user": end_user_json(&c.end_user),
        "tags": c.tags,
        "webhook_url_override": c.webhook_url_override,
        "credentials": credentials,
    })
}

/// Nango's `ApiPublicConnection` (list entries, no credentials).
pub fn summary_json(c: &ConnectionSummary) -> Value {
    serde_json::json!({
        "id": c.id,
        "connection_id": c.connection_id,
        "provider_config_key": c.provider_config_key,
        "provider": c.provider,
        "created": c.created_at,
        "metadata": c.metadata,
        "errors": errors_json(&c.refresh_error),
        "end_user": end_user_json(&c.end_user),
        "tags": c.tags,
    })
}

/// What creating (or re-authorizing) a connection stores.
#[derive(Debug, Clone)]
pub struct NewConnection {
    pub connection_id: String,
    pub credentials: Credentials,
    pub connection_config: Map<String, Value>,
    /// The `connection_config` fields to store sealed: those the provider's catalog entry
    /// marks `secret` ([`crate::providers::Provider::secret_config_fields`]).
    pub secret_config: Vec<String>,
    /// `None` keeps the metadata of an existing connection.
    pub metadata: Option<Value>,
    pub end_user: Option<EndUser>,
    pub tags: Map<String, Value>,
    pub webhook_url_override: Option<String>,
}

pub fn check_connection_id(id: &str) -> Result<()> {
    if id.is_empty() || id.len() > 255 || id.chars().any(|c| c.is_control()) {
        return Err(Error::invalid(
            "connection_id",
            "must be 1-255 characters without control characters",
        ));
    }
    Ok(())
}

/// Connection tags as Nango keeps them: string values under lower-cased keys (Nango's clients
/// lower-case the keys they filter on). `field` names the tags in errors; two keys that differ
/// only in case are refused.
pub fn normalize_tags(tags: Map<String, Value>, field: &str) -> Result<Map<String, Value>> {
    let mut out = Map::new();
    for (key, value) in tags {
        if !value.is_string() {
            return Err(Error::invalid(
                format!("{field}.{key}"),
                "tag values must be strings",
            ));
        }
        let lower = key.to_lowercase();
        if out.insert(lower.clone(), value).is_some() {
            return Err(Error::invalid(
                format!("{field}.{key}"),
                format!("`{lower}` is given twice (tag keys are not case-sensitive)"),
            ));
        }
    }
    Ok(out)
}

/// Stores a connection: creates it, or replaces the credentials and configuration of the
/// existing one with the same id (re-authorization). Returns it and whether it is new.
pub async fn upsert(
    db: &PgPool,
    cipher: &Cipher,
    integration: &Integration,
    new: NewConnection,
) -> Result<(Connection, bool)> {
    check_connection_id(&new.connection_id)?;
    let mut tx = db.begin().await?;
    // The uuid binds the ciphertext to the row, so an existing row keeps its own.
    let existing: Option<(Uuid,)> = sqlx::query_as(
        "SELECT uuid FROM connections WHERE integration_id = $1 AND connection_id = $2 FOR UPDATE",
    )
    .bind(integration.id)
    .bind(&new.connection_id)
    .fetch_optional(&mut *tx)
    .await?;
    let created = existing.is_none();
    let uuid = existing.map_or_else(Uuid::new_v4, |(u,)| u);
    let sealed = cipher.seal_json(
        &serde_json::to_value(&new.credentials).expect("credentials serialize"),
        &credentials_aad(uuid),
    );
    let end_user = new
        .end_user
        .as_ref()
        .map(|u| serde_json::to_value(u).expect("end user serializes"));
    let id: (ConnectionRowId,) = sqlx::query_as(
        "INSERT INTO connections (uuid, environment_id, integration_id, connection_id,
            credentials_encrypted, credentials_expires_at, connection_config, metadata, end_user,
            tags, webhook_url_override)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
         ON CONFLICT (integration_id, connection_id) DO UPDATE SET
            credentials_encrypted = EXCLUDED.credentials_encrypted,
            credentials_expires_at = EXCLUDED.credentials_expires_at,
            connection_config = connections.connection_config || EXCLUDED.connection_config,
            metadata = COALESCE(EXCLUDED.metadata, connections.metadata),
            end_user = COALESCE(EXCLUDED.end_user, connections.end_user),
            tags = connections.tags || EXCLUDED.tags,
            webhook_url_override = COALESCE(EXCLUDED.webhook_url_override, connections.webhook_url_override),
            refresh_failures = 0,
            refresh_error = NULL,
            updated_at = now()
         RETURNING id",
    )
    .bind(uuid)
    .bind(integration.environment_id)
    .bind(integration.id)
    .bind(&new.connection_id)
    .bind(sealed)
    .bind(new.credentials.expires_at())
    .bind(Value::Object(seal_config(
        cipher,
        uuid,
        new.connection_config,
        &new.secret_config,
    )))
    .bind(new.metadata)
    .bind(end_user)
    .bind(Value::Object(new.tags))
    .bind(new.webhook_url_override)
    .fetch_one(&mut *tx)
    .await?;
    let row: Row = sqlx::query_as(concat!(
        "SELECT ",
        columns!(),
        " FROM connections c JOIN integrations i ON i.id = c.integration_id WHERE c.id = $1"
    ))
    .bind(id.0)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok((row.decrypt(cipher)?, created))
}

/// The connection `connection_id` of integration `provider_config_key` in the environment.
pub async fn get(
    db: &PgPool,
    cipher: &Cipher,
    environment_id: EnvironmentId,
    provider_config_key: &str,
    connection_id: &str,
) -> Result<Connection> {
    let row: Option<Row> = sqlx::query_as(concat!(
        "SELECT ",
        columns!(),
        " FROM connections c JOIN integrations i ON i.id = c.integration_id
          WHERE c.environment_id = $1 AND i.unique_key = $2 AND c.connection_id = $3"
    ))
    .bind(environment_id)
    .bind(provider_config_key)
    .bind(connection_id)
    .fetch_optional(db)
    .await?;
    match row {
        Some(row) => row.decrypt(cipher),
        None => Err(missing(db, environment_id, provider_config_key, connection_id).await),
    }
}

/// Which field of a connection an incoming webhook's routing value must equal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookMatch {
    ConnectionId,
    /// A path into `connection_config`.
    Config(Vec<String>),
    /// A path into `metadata`.
    Metadata(Vec<String>),
}

/// The ids of the integration's connections whose `field` is `value` (JSON strings and numbers
/// compare by their text), oldest first.
pub async fn find_for_webhook(
    db: &PgPool,
    integration_id: IntegrationId,
    field: &WebhookMatch,
    value: &str,
) -> Result<Vec<String>> {
    let (sql, path): (&'static str, &[String]) = match field {
        WebhookMatch::ConnectionId => (
            "SELECT connection_id FROM connections
             WHERE integration_id = $1 AND connection_id = $2 ORDER BY id",
            &[],
        ),
        WebhookMatch::Config(path) => (
            "SELECT connection_id FROM connections
             WHERE integration_id = $1 AND connection_config #>> $3 = $2 ORDER BY id",
            path,
        ),
        WebhookMatch::Metadata(path) => (
            "SELECT connection_id FROM connections
             WHERE integration_id = $1 AND metadata #>> $3 = $2 ORDER BY id",
            path,
        ),
    };
    Ok(sqlx::query_scalar(sql)
        .bind(integration_id)
        .bind(value)
        .bind(path)
        .fetch_all(db)
        .await?)
}

/// The row id of a connection (for records), without reading its credentials; `unknown_connection`
/// when the environment has no such connection.
pub async fn row_id(
    db: &PgPool,
    environment_id: EnvironmentId,
    provider_config_key: &str,
    connection_id: &str,
) -> Result<ConnectionRowId> {
    let id: Option<(ConnectionRowId,)> = sqlx::query_as(
        "SELECT c.id FROM connections c JOIN integrations i ON i.id = c.integration_id
         WHERE c.environment_id = $1 AND i.unique_key = $2 AND c.connection_id = $3",
    )
    .bind(environment_id)
    .bind(provider_config_key)
    .bind(connection_id)
    .fetch_optional(db)
    .await?;
    id.map(|(id,)| id).ok_or_else(|| Error::NotFound {
        code: ErrorCode::UnknownConnection,
        message: format!(
            "connection `{connection_id}` of integration `{provider_config_key}` was not found"
        ),
    })
}

/// The connection with row uuid `connection_uuid`, read through `conn` (inside a transaction
/// that holds the connection's refresh lock).
pub async fn get_by_uuid(
    conn: &mut sqlx::PgConnection,
    cipher: &Cipher,
    connection_uuid: Uuid,
) -> Result<Connection> {
    let row: Option<Row> = sqlx::query_as(concat!(
        "SELECT ",
        columns!(),
        " FROM connections c JOIN integrations i ON i.id = c.integration_id WHERE c.uuid = $1"
    ))
    .bind(connection_uuid)
    .fetch_optional(conn)
    .await?;
    row.ok_or_else(|| Error::not_found("connection"))?
        .decrypt(cipher)
}

/// Serializes refreshes of one connection across processes: takes the connection's refresh
/// lock until the transaction `tx` ends, if no one holds it; false when
/// another refresh (in any process) holds it. Waiters poll rather than block, so a waiting
/// caller does not keep a pooled connection busy. An advisory lock rather than `FOR UPDATE`:
/// it assigns no transaction id, so a refresh waiting on a slow provider does not hold back
/// the records readers' xmin horizon.
pub async fn try_lock_for_refresh(
    tx: &mut sqlx::PgConnection,
    connection_uuid: Uuid,
) -> Result<bool> {
    Ok(sqlx::query_scalar(
        "SELECT pg_try_advisory_xact_lock(hashtextextended('lasso:refresh:' || $1::text, 0))",
    )
    .bind(connection_uuid)
    .fetch_one(tx)
    .await?)
}

/// Tells an unknown integration apart from an unknown connection.
async fn missing(
    db: &PgPool,
    environment_id: EnvironmentId,
    provider_config_key: &str,
    connection_id: &str,
) -> Error {
    match integrations::find(db, environment_id, provider_config_key).await {
        Ok(Some(_)) => Error::not_found(format!("connection `{connection_id}`")),
        Ok(None) => Error::unknown_integration(provider_config_key),
        Err(e) => e,
    }
}

/// Key rotation: re-seals under the cipher's current key what a previous key sealed (each
/// connection's credentials and secret config fields), at most `limit` values; returns how
/// many. A row is written only if it did not change since it was read, so a run can stop
/// anywhere and the next one goes on from there (values already current are skipped).
pub async fn reseal(db: &PgPool, cipher: &Cipher, limit: u64) -> Result<u64> {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut done = 0u64;
    let mut after = 0i64;
    loop {
        let rows: Vec<(i64, Uuid, Vec<u8>, Value)> = sqlx::query_as(
            "SELECT id, uuid, credentials_encrypted, connection_config FROM connections
             WHERE id > $1 ORDER BY id LIMIT 200",
        )
        .bind(after)
        .fetch_all(db)
        .await?;
        let Some(last) = rows.last() else {
            return Ok(done);
        };
        after = last.0;
        for (id, uuid, credentials, config) in rows {
            let mut changed = 0u64;
            let mut new_credentials = credentials.clone();
            if done < limit
                && let Some(fresh) = cipher.reseal(&credentials, &credentials_aad(uuid))?
            {
                new_credentials = fresh;
                changed += 1;
            }
            let mut new_config = config.clone();
            if let Value::Object(fields) = &mut new_config {
                for (field, value) in fields.iter_mut() {
                    if done + changed >= limit {
                        break;
                    }
                    let Some(text) = sealed_text(value) else {
                        continue;
                    };
                    let sealed = b64.decode(text).map_err(|_| Error::Decrypt)?;
                    if let Some(fresh) = cipher.reseal(&sealed, &config_aad(uuid, field))? {
                        *value = serde_json::json!({SEALED_KEY: b64.encode(fresh)});
                        changed += 1;
                    }
                }
            }
            if changed == 0 {
                if done >= limit {
                    return Ok(done);
                }
                continue;
            }
            let written = sqlx::query(
                "UPDATE connections SET credentials_encrypted = $2, connection_config = $3
                 WHERE id = $1 AND credentials_encrypted = $4 AND connection_config = $5",
            )
            .bind(id)
            .bind(&new_credentials)
            .bind(&new_config)
            .bind(&credentials)
            .bind(&config)
            .execute(db)
            .await?
            .rows_affected();
            // A row changed meanwhile was written under the current key by that writer.
            if written == 1 {
                done += changed;
            }
        }
    }
}

/// Replaces a connection's credentials (after a refresh).
pub async fn update_credentials<'e>(
    db: impl PgExecutor<'e>,
    cipher: &Cipher,
    connection: &Connection,
    credentials: &Credentials,
) -> Result<()> {
    let sealed = cipher.seal_json(
        &serde_json::to_value(credentials).expect("credentials serialize"),
        &credentials_aad(connection.uuid),
    );
    sqlx::query(
        "UPDATE connections SET credentials_encrypted = $2, credentials_expires_at = $3,
            refresh_failures = 0, refresh_error = NULL, last_refresh_at = now(), updated_at = now()
         WHERE uuid = $1",
    )
    .bind(connection.uuid)
    .bind(sealed)
    .bind(credentials.expires_at())
    .execute(db)
    .await?;
    Ok(())
}

/// Records a failed refresh; returns the number of consecutive failures.
pub async fn record_refresh_failure<'e>(
    db: impl PgExecutor<'e>,
    connection_uuid: Uuid,
    error: &str,
) -> Result<i32> {
    let (failures,): (i32,) = sqlx::query_as(
        "UPDATE connections SET refresh_failures = refresh_failures + 1, refresh_error = $2,
            last_refresh_failure_at = now()
         WHERE uuid = $1 RETURNING refresh_failures",
    )
    .bind(connection_uuid)
    .bind(error)
    .fetch_one(db)
    .await?;
    Ok(failures)
}

pub async fn touch_last_fetched(db: &PgPool, connection_uuid: Uuid) -> Result<()> {
    sqlx::query("UPDATE connections SET last_fetched_at = now() WHERE uuid = $1")
        .bind(connection_uuid)
        .execute(db)
        .await?;
    Ok(())
}

#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    /// Exact connection id.
    pub connection_id: Option<String>,
    /// Substring of the connection id or the end user's id, email or name.
    pub search: Option<String>,
    pub end_user_id: Option<String>,
    pub end_user_organization_id: Option<String>,
    /// Integration unique keys; empty means all.
    pub integration_ids: Vec<String>,
    /// Every pair must match the connection's tags.
    pub tags: Map<String, Value>,
    pub limit: i64,
    /// Zero-based page of `limit` rows.
    pub page: i64,
}

pub const MAX_LIST_LIMIT: i64 = 1000;

/// How many connections an integration has (what a deploy of its syncs schedules).
pub async fn count_for_integration(db: &PgPool, integration_id: IntegrationId) -> Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT count(*) FROM connections WHERE integration_id = $1")
            .bind(integration_id)
            .fetch_one(db)
            .await?,
    )
}

pub async fn list(
    db: &PgPool,
    environment_id: EnvironmentId,
    filter: &ListFilter,
) -> Result<Vec<ConnectionSummary>> {
    if !(1..=MAX_LIST_LIMIT).contains(&filter.limit) {
        return Err(Error::invalid(
            "limit",
            format!("must be between 1 and {MAX_LIST_LIMIT}"),
        ));
    }
    if filter.page < 0 {
        return Err(Error::invalid("page", "must not be negative"));
    }
    let search = filter.search.as_deref().map(|s| {
        format!(
            "%{}%",
            s.replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_")
        )
    });
    let rows: Vec<SummaryRow> = sqlx::query_as(
        "SELECT c.id, i.unique_key AS provider_config_key, i.provider, c.connection_id, c.metadata,
                c.end_user, c.tags, c.refresh_error, c.created_at
         FROM connections c JOIN integrations i ON i.id = c.integration_id
         WHERE c.environment_id = $1
           AND ($2::text IS NULL OR c.connection_id = $2)
           AND ($3::text IS NULL OR c.connection_id ILIKE $3 OR c.end_user ->> 'id' ILIKE $3
                OR c.end_user ->> 'email' ILIKE $3 OR c.end_user ->> 'display_name' ILIKE $3)
           AND ($4::text IS NULL OR c.end_user ->> 'id' = $4)
           AND ($5::text IS NULL OR c.end_user -> 'organization' ->> 'id' = $5)
           AND (cardinality($6::text[]) = 0 OR i.unique_key = ANY($6))
           AND c.tags @> $7
         ORDER BY c.created_at DESC, c.id DESC
         LIMIT $8 OFFSET $9",
    )
    .bind(environment_id)
    .bind(&filter.connection_id)
    .bind(search)
    .bind(&filter.end_user_id)
    .bind(&filter.end_user_organization_id)
    .bind(&filter.integration_ids)
    .bind(Value::Object(filter.tags.clone()))
    .bind(filter.limit)
    .bind(filter.page * filter.limit)
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| ConnectionSummary {
            id: r.id,
            provider_config_key: r.provider_config_key,
            provider: r.provider,
            connection_id: r.connection_id,
            metadata: r.metadata,
            end_user: end_user(r.end_user),
            tags: object(r.tags),
            refresh_error: r.refresh_error,
            created_at: r.created_at,
        })
        .collect())
}

#[derive(FromRow)]
struct SummaryRow {
    id: ConnectionRowId,
    provider_config_key: String,
    provider: String,
    connection_id: String,
    metadata: Option<Value>,
    end_user: Option<Value>,
    tags: Value,
    refresh_error: Option<String>,
    created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Default)]
pub struct ConnectionPatch {
    pub end_user: Option<EndUser>,
    pub tags: Option<Map<String, Value>>,
    pub webhook_url_override: Option<String>,
}

pub async fn patch(
    db: &PgPool,
    environment_id: EnvironmentId,
    provider_config_key: &str,
    connection_id: &str,
    patch: ConnectionPatch,
) -> Result<()> {
    let updated = sqlx::query(
        "UPDATE connections c SET
            end_user = COALESCE($4, c.end_user),
            tags = COALESCE($5, c.tags),
            webhook_url_override = COALESCE($6, c.webhook_url_override),
            updated_at = now()
         FROM integrations i
         WHERE i.id = c.integration_id AND c.environment_id = $1 AND i.unique_key = $2
           AND c.connection_id = $3",
    )
    .bind(environment_id)
    .bind(provider_config_key)
    .bind(connection_id)
    .bind(
        patch
            .end_user
            .map(|u| serde_json::to_value(u).expect("end user serializes")),
    )
    .bind(patch.tags.map(Value::Object))
    .bind(patch.webhook_url_override)
    .execute(db)
    .await?
    .rows_affected();
    if updated == 0 {
        return Err(missing(db, environment_id, provider_config_key, connection_id).await);
    }
    Ok(())
}

pub async fn delete(
    db: &PgPool,
    environment_id: EnvironmentId,
    provider_config_key: &str,
    connection_id: &str,
) -> Result<()> {
    let deleted = sqlx::query(
        "DELETE FROM connections c USING integrations i
         WHERE i.id = c.integration_id AND c.environment_id = $1 AND i.unique_key = $2
           AND c.connection_id = $3",
    )
    .bind(environment_id)
    .bind(provider_config_key)
    .bind(connection_id)
    .execute(db)
    .await?
    .rows_affected();
    if deleted == 0 {
        return Err(missing(db, environment_id, provider_config_key, connection_id).await);
    }
    Ok(())
}

/// Sets (replaces) or updates (merges into) the metadata of one or more connections of an
/// integration, all or none: an unknown connection id changes nothing.
pub async fn write_metadata(
    db: &PgPool,
    environment_id: EnvironmentId,
    provider_config_key: &str,
    connection_ids: &[String],
    metadata: &Map<String, Value>,
    merge: bool,
) -> Result<()> {
    if connection_ids.is_empty() {
        return Err(Error::invalid(
            "connection_id",
            "name at least one connection",
        ));
    }
    let integration = integrations::get(db, environment_id, provider_config_key).await?;
    let mut tx = db.begin().await?;
    let updated: Vec<(String,)> = sqlx::query_as(
        "UPDATE connections SET
            metadata = CASE WHEN $4 THEN COALESCE(metadata, '{}'::jsonb) || $3 ELSE $3 END,
            updated_at = now()
         WHERE integration_id = $1 AND connection_id = ANY($2)
         RETURNING connection_id",
    )
    .bind(integration.id)
    .bind(connection_ids)
    .bind(Value::Object(metadata.clone()))
    .bind(merge)
    .fetch_all(&mut *tx)
    .await?;
    if let Some(unknown) = connection_ids
        .iter()
        .find(|id| !updated.iter().any(|(u,)| u == *id))
    {
        return Err(Error::NotFound {
            code: ErrorCode::UnknownConnection,
            message: format!("connection `{unknown}` was not found"),
        });
    }
    tx.commit().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    #[test]
    fn tags_are_strings_under_lower_case_keys() {
        assert_eq!(
            normalize_tags(map(json!({"Team": "Blue", "plan": "pro"})), "tags").unwrap(),
            map(json!({"team": "Blue", "plan": "pro"}))
        );
        let field = |v: Value| match normalize_tags(map(v), "tags").unwrap_err() {
            Error::Invalid { field, .. } => field,
            e => panic!("{e}"),
        };
        assert_eq!(field(json!({"n": 1})), "tags.n");
        assert!(field(json!({"team": "a", "TEAM": "b"})).eq_ignore_ascii_case("tags.team"));
    }
}
