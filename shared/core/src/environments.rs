//! Environments, their secret keys and their variables (table owner: this module).

use crate::EnvironmentId;
use serde::Serialize;
use sqlx::{FromRow, PgPool};
use uuid::Uuid;

use crate::crypto::{Cipher, random_token, token_digest};
use crate::{Error, Result};

const KEY_PREFIX: &str = "lasso_sk_";

#[derive(Debug, Clone, FromRow, Serialize)]
pub struct Environment {
    pub id: EnvironmentId,
    pub uuid: Uuid,
    pub name: String,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct EnvironmentVariable {
    pub name: String,
    pub value: String,
}

/// Creates an environment and its first secret key. The key is returned once and only its
/// digest is stored.
pub async fn create(db: &PgPool, name: &str) -> Result<(Environment, String)> {
    let valid = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        && !name.starts_with(['-', '_']);
    if !valid {
        return Err(Error::invalid(
            "name",
            "use 1-63 lowercase letters, digits, `-` or `_`",
        ));
    }
    let mut tx = db.begin().await?;
    let env: Environment = sqlx::query_as(
        "INSERT INTO environments (uuid, name) VALUES ($1, $2)
         ON CONFLICT (name) DO NOTHING
         RETURNING id, uuid, name",
    )
    .bind(Uuid::new_v4())
    .bind(name)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or_else(|| Error::Conflict(format!("environment `{name}` already exists")))?;
    let key = insert_key(&mut tx, env.id).await?;
    tx.commit().await?;
    Ok((env, key))
}

/// Adds a secret key to an existing environment (old keys stay valid until revoked).
pub async fn add_key(db: &PgPool, environment_id: EnvironmentId) -> Result<String> {
    let mut conn = db.acquire().await?;
    insert_key(&mut conn, environment_id).await
}

async fn insert_key(tx: &mut sqlx::PgConnection, environment_id: EnvironmentId) -> Result<String> {
    let key = random_token(KEY_PREFIX);
    let hint = key[key.len() - 4..].to_string();
    sqlx::query(
        "INSERT INTO environment_keys (key_hash, environment_id, hint) VALUES ($1, $2, $3)",
    )
    .bind(token_digest(&key))
    .bind(environment_id)
    .bind(hint)
    .execute(tx)
    .await?;
    Ok(key)
}

/// One of an environment's secret keys, as the dashboard lists them (never the key itself).
#[derive(Debug, Clone, FromRow, Serialize)]
pub struct KeyInfo {
    /// The key's last four characters.
    pub hint: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// When it stops (or stopped) working; `None` while it has no end.
    pub revoked_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// The environment's keys that work now or worked in the last week, newest first.
pub async fn keys(db: &PgPool, environment_id: EnvironmentId) -> Result<Vec<KeyInfo>> {
    Ok(sqlx::query_as(
        "SELECT hint, created_at, revoked_at FROM environment_keys
         WHERE environment_id = $1 AND (revoked_at IS NULL OR revoked_at > now() - interval '7 days')
         ORDER BY created_at DESC",
    )
    .bind(environment_id)
    .fetch_all(db)
    .await?)
}

/// Longest grace period of a rotation.
pub const MAX_ROTATION_GRACE_SECS: i64 = 30 * 24 * 3600;

/// Rotates the environment's secret key: a new key (returned once), and every key that works
/// now keeps working for `grace_secs` more seconds, then stops (0 stops them at once).
pub async fn rotate_key(
    db: &PgPool,
    environment_id: EnvironmentId,
    grace_secs: i64,
) -> Result<String> {
    if !(0..=MAX_ROTATION_GRACE_SECS).contains(&grace_secs) {
        return Err(Error::invalid(
            "grace_secs",
            format!("must be between 0 and {MAX_ROTATION_GRACE_SECS} seconds"),
        ));
    }
    let mut tx = db.begin().await?;
    // A key already due to stop sooner keeps its earlier end.
    sqlx::query(
        "UPDATE environment_keys
         SET revoked_at = now() + make_interval(secs => $2)
         WHERE environment_id = $1
           AND (revoked_at IS NULL OR revoked_at > now() + make_interval(secs => $2))",
    )
    .bind(environment_id)
    .bind(grace_secs as f64)
    .execute(&mut *tx)
    .await?;
    let key = insert_key(&mut tx, environment_id).await?;
    tx.commit().await?;
    Ok(key)
}

/// The environment a live secret key belongs to, if any: one not revoked, or still within a
/// rotation's grace period.
pub async fn find_by_secret_key(db: &PgPool, key: &str) -> Result<Option<Environment>> {
    Ok(sqlx::query_as(
        "SELECT e.id, e.uuid, e.name
         FROM environment_keys k JOIN environments e ON e.id = k.environment_id
         WHERE k.key_hash = $1 AND (k.revoked_at IS NULL OR k.revoked_at > now())",
    )
    .bind(token_digest(key))
    .fetch_optional(db)
    .await?)
}

pub async fn find_by_name(db: &PgPool, name: &str) -> Result<Option<Environment>> {
    Ok(
        sqlx::query_as("SELECT id, uuid, name FROM environments WHERE name = $1")
            .bind(name)
            .fetch_optional(db)
            .await?,
    )
}

pub async fn find_by_id(db: &PgPool, id: EnvironmentId) -> Result<Option<Environment>> {
    Ok(
        sqlx::query_as("SELECT id, uuid, name FROM environments WHERE id = $1")
            .bind(id)
            .fetch_optional(db)
            .await?,
    )
}

pub async fn find_by_uuid(db: &PgPool, uuid: Uuid) -> Result<Option<Environment>> {
    Ok(
        sqlx::query_as("SELECT id, uuid, name FROM environments WHERE uuid = $1")
            .bind(uuid)
            .fetch_optional(db)
            .await?,
    )
}

fn variable_aad(environment_id: EnvironmentId, name: &str) -> String {
    format!("environment:{environment_id}:variable:{name}")
}

/// Replaces the environment's variables with `vars` in one transaction.
pub async fn set_variables(
    db: &PgPool,
    cipher: &Cipher,
    environment_id: EnvironmentId,
    vars: &[EnvironmentVariable],
) -> Result<()> {
    for (i, v) in vars.iter().enumerate() {
        if v.name.is_empty() || v.name.len() > 256 {
            return Err(Error::invalid(
                format!("variables[{i}].name"),
                "must be 1-256 characters",
            ));
        }
    }
    let names: Vec<&str> = vars.iter().map(|v| v.name.as_str()).collect();
    let values: Vec<Vec<u8>> = vars
        .iter()
        .map(|v| cipher.seal(v.value.as_bytes(), &variable_aad(environment_id, &v.name)))
        .collect();
    let mut tx = db.begin().await?;
    sqlx::query("DELETE FROM environment_variables WHERE environment_id = $1")
        .bind(environment_id)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO environment_variables (environment_id, name, value_encrypted)
         SELECT $1, * FROM UNNEST($2::text[], $3::bytea[])",
    )
    .bind(environment_id)
    .bind(&names)
    .bind(&values)
    .execute(&mut *tx)
    .await
    .map_err(|e| match e {
        sqlx::Error::Database(d) if d.is_unique_violation() => {
            Error::invalid("variables", "names must be unique")
        }
        e => e.into(),
    })?;
    tx.commit().await?;
    Ok(())
}

pub async fn variables(
    db: &PgPool,
    cipher: &Cipher,
    environment_id: EnvironmentId,
) -> Result<Vec<EnvironmentVariable>> {
    let rows: Vec<(String, Vec<u8>)> = sqlx::query_as(
        "SELECT name, value_encrypted FROM environment_variables
         WHERE environment_id = $1 ORDER BY name",
    )
    .bind(environment_id)
    .fetch_all(db)
    .await?;
    rows.into_iter()
        .map(|(name, sealed)| {
            let plain = cipher.open(&sealed, &variable_aad(environment_id, &name))?;
            Ok(EnvironmentVariable {
                value: String::from_utf8(plain).map_err(|_| Error::Decrypt)?,
                name,
            })
        })
        .collect()
}

/// Key rotation: re-seals under the cipher's current key the environments' webhook signing
/// secrets and variables a previous key sealed, at most `limit` values; returns how many
/// (see [`crate::connections::reseal`]).
pub async fn reseal(db: &PgPool, cipher: &Cipher, limit: u64) -> Result<u64> {
    let mut done = 0u64;
    let secrets: Vec<(EnvironmentId, Vec<u8>)> = sqlx::query_as(
        "SELECT id, webhook_secret_encrypted FROM environments
         WHERE webhook_secret_encrypted IS NOT NULL ORDER BY id",
    )
    .fetch_all(db)
    .await?;
    for (id, sealed) in secrets {
        if done >= limit {
            return Ok(done);
        }
        if let Some(fresh) = cipher.reseal(&sealed, &webhook_secret_aad(id))? {
            done += sqlx::query(
                "UPDATE environments SET webhook_secret_encrypted = $2
                 WHERE id = $1 AND webhook_secret_encrypted = $3",
            )
            .bind(id)
            .bind(fresh)
            .bind(sealed)
            .execute(db)
            .await?
            .rows_affected();
        }
    }
    let variables: Vec<(EnvironmentId, String, Vec<u8>)> = sqlx::query_as(
        "SELECT environment_id, name, value_encrypted FROM environment_variables
         ORDER BY environment_id, name",
    )
    .fetch_all(db)
    .await?;
    for (environment_id, name, sealed) in variables {
        if done >= limit {
            return Ok(done);
        }
        if let Some(fresh) = cipher.reseal(&sealed, &variable_aad(environment_id, &name))? {
            done += sqlx::query(
                "UPDATE environment_variables SET value_encrypted = $3
                 WHERE environment_id = $1 AND name = $2 AND value_encrypted = $4",
            )
            .bind(environment_id)
            .bind(&name)
            .bind(fresh)
            .bind(sealed)
            .execute(db)
            .await?
            .rows_affected();
        }
    }
    Ok(done)
}

/// Where and how the environment's webhooks are sent.
pub struct WebhookConfig {
    pub url: Option<String>,
    pub signing_secret: secrecy::SecretString,
}

fn webhook_secret_aad(environment_id: EnvironmentId) -> String {
    format!("environment:{environment_id}:webhook_secret")
}

/// The environment's webhook URL and signing secret; `None` until a URL was first set.
pub async fn webhook_config(
    db: &PgPool,
    cipher: &Cipher,
    environment_id: EnvironmentId,
) -> Result<Option<WebhookConfig>> {
    let row: Option<(Option<String>, Option<Vec<u8>>)> = sqlx::query_as(
        "SELECT webhook_url, webhook_secret_encrypted FROM environments WHERE id = $1",
    )
    .bind(environment_id)
    .fetch_optional(db)
    .await?;
    let Some((url, Some(sealed))) = row else {
        return Ok(None);
    };
    let secret = cipher.open(&sealed, &webhook_secret_aad(environment_id))?;
    Ok(Some(WebhookConfig {
        url,
        signing_secret: String::from_utf8(secret)
            .map_err(|_| Error::Decrypt)?
            .into(),
    }))
}

/// Sets (or clears, with `None`) the webhook URL. The signing secret is created on first use
/// and kept across URL changes.
pub async fn set_webhook_url(
    db: &PgPool,
    cipher: &Cipher,
    environment_id: EnvironmentId,
    url: Option<&str>,
) -> Result<WebhookConfig> {
    if let Some(u) = url {
        match url::Url::parse(u) {
            Ok(parsed) if matches!(parsed.scheme(), "http" | "https") => {}
            _ => return Err(Error::invalid("webhook_url", "expected an http(s) URL")),
        }
    }
    let fresh_secret = random_token("whsec_");
    let sealed = cipher.seal(fresh_secret.as_bytes(), &webhook_secret_aad(environment_id));
    sqlx::query(
        "UPDATE environments SET webhook_url = $2,
            webhook_secret_encrypted = COALESCE(webhook_secret_encrypted, $3)
         WHERE id = $1",
    )
    .bind(environment_id)
    .bind(url)
    .bind(sealed)
    .execute(db)
    .await?;
    webhook_config(db, cipher, environment_id)
        .await?
        .ok_or_else(|| Error::not_found("environment"))
}
