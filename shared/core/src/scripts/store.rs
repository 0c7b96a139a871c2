//! The control plane's record of deployed functions (table `function_versions`, owned here):
//! which bundle and configuration each function of an integration runs, with the versions it
//! ran before.

use crate::{EnvironmentId, IntegrationId};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{FromRow, PgPool, Postgres, Transaction};

use super::bundle::sha256_hex;
use super::{Bundle, FunctionConfig, FunctionType};
use crate::adapters::ScriptStore;
use crate::{Error, Result};

/// One deployed version of a function.
#[derive(Debug, Clone, PartialEq)]
pub struct DeployedFunction {
    pub id: i64,
    pub environment_id: EnvironmentId,
    pub integration_id: IntegrationId,
    /// The integration's unique key.
    pub integration: String,
    pub name: String,
    pub function_type: FunctionType,
    /// Where the bundle is in the script store (`bundles/<sha256>.json`).
    pub bundle_key: String,
    pub bundle_sha256: String,
    pub config: FunctionConfig,
    pub deployed_at: DateTime<Utc>,
    pub active: bool,
    /// The tool that deployed this version.
    pub deployed_with: DeployTool,
}

/// Which CLI deployed a version (column `deployed_with`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeployTool {
    /// `lasso deploy` (`POST /scripts/deploy`).
    #[default]
    Lasso,
    /// Nango's `nango deploy` (`POST /sync/deploy`).
    Nango,
}

impl DeployTool {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Lasso => "lasso",
            Self::Nango => "nango",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "lasso" => Some(Self::Lasso),
            "nango" => Some(Self::Nango),
            _ => None,
        }
    }
}

#[derive(FromRow)]
struct Row {
    id: i64,
    environment_id: EnvironmentId,
    integration_id: IntegrationId,
    integration: String,
    name: String,
    #[sqlx(rename = "type")]
    function_type: String,
    bundle_key: String,
    bundle_sha256: String,
    config: sqlx::types::Json<Value>,
    deployed_at: DateTime<Utc>,
    active: bool,
    deployed_with: String,
}

impl TryFrom<Row> for DeployedFunction {
    type Error = Error;

    fn try_from(row: Row) -> Result<Self> {
        let function_type = FunctionType::parse(&row.function_type).ok_or_else(|| {
            Error::Internal(format!(
                "function type `{}` in the database",
                row.function_type
            ))
        })?;
        let config = serde_json::from_value(row.config.0).map_err(|e| {
            Error::Internal(format!(
                "stored configuration of function {} is unreadable: {e}",
                row.id
            ))
        })?;
        let deployed_with = DeployTool::parse(&row.deployed_with).ok_or_else(|| {
            Error::Internal(format!(
                "deploy tool `{}` in the database",
                row.deployed_with
            ))
        })?;
        Ok(Self {
            id: row.id,
            environment_id: row.environment_id,
            integration_id: row.integration_id,
            integration: row.integration,
            name: row.name,
            function_type,
            bundle_key: row.bundle_key,
            bundle_sha256: row.bundle_sha256,
            config,
            deployed_at: row.deployed_at,
            active: row.active,
            deployed_with,
        })
    }
}

/// The columns, as a literal so queries stay `&'static str` (sqlx's injection guard).
macro_rules! select {
    () => {
        "SELECT f.id, f.environment_id, f.integration_id, i.unique_key AS integration, f.name,
                f.type, f.bundle_key, f.bundle_sha256, f.config, f.deployed_at, f.active,
                f.deployed_with
         FROM function_versions f JOIN integrations i ON i.id = f.integration_id "
    };
}

fn convert(rows: Vec<Row>) -> Result<Vec<DeployedFunction>> {
    rows.into_iter().map(DeployedFunction::try_from).collect()
}

/// The active functions of an integration, by type and name.
pub async fn list_active(
    db: &PgPool,
    integration_id: IntegrationId,
) -> Result<Vec<DeployedFunction>> {
    convert(
        sqlx::query_as(concat!(
            select!(),
            "WHERE f.integration_id = $1 AND f.active ORDER BY f.type DESC, f.name"
        ))
        .bind(integration_id)
        .fetch_all(db)
        .await?,
    )
}

/// The active version of a function, if it is deployed.
pub async fn find_active(
    db: &PgPool,
    integration_id: IntegrationId,
    function_type: FunctionType,
    name: &str,
) -> Result<Option<DeployedFunction>> {
    sqlx::query_as::<_, Row>(concat!(
        select!(),
        "WHERE f.integration_id = $1 AND f.type = $2 AND f.name = $3 AND f.active"
    ))
    .bind(integration_id)
    .bind(function_type.as_str())
    .bind(name)
    .fetch_optional(db)
    .await?
    .map(DeployedFunction::try_from)
    .transpose()
}

/// The active version of a function of the environment's integration `unique_key`:
/// `unknown_provider_config` for an unknown integration, `not_found` when the function is not
/// deployed.
pub async fn get_active(
    db: &PgPool,
    environment_id: EnvironmentId,
    unique_key: &str,
    function_type: FunctionType,
    name: &str,
) -> Result<DeployedFunction> {
    let integration = crate::integrations::get(db, environment_id, unique_key).await?;
    find_active(db, integration.id, function_type, name)
        .await?
        .ok_or_else(|| {
            Error::not_found(format!(
                "{function_type} `{name}` of integration `{unique_key}`"
            ))
        })
}

/// Every version of a function, newest first (the active one, if any, among them).
pub async fn history(
    db: &PgPool,
    integration_id: IntegrationId,
    function_type: FunctionType,
    name: &str,
) -> Result<Vec<DeployedFunction>> {
    convert(
        sqlx::query_as(concat!(
            select!(),
            "WHERE f.integration_id = $1 AND f.type = $2 AND f.name = $3
             ORDER BY f.deployed_at DESC, f.id DESC"
        ))
        .bind(integration_id)
        .bind(function_type.as_str())
        .bind(name)
        .fetch_all(db)
        .await?,
    )
}

/// Fetches a function's bundle from the script store, checking it is the one deployed.
pub async fn load_bundle(scripts: &dyn ScriptStore, function: &DeployedFunction) -> Result<Bundle> {
    let bytes = scripts.get(&function.bundle_key).await?;
    if sha256_hex(&bytes) != function.bundle_sha256 {
        return Err(Error::script_store(format!(
            "`{}` does not hold the deployed bundle (hash mismatch)",
            function.bundle_key
        )));
    }
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| Error::script_store(format!("`{}` is not UTF-8", function.bundle_key)))?;
    Bundle::parse(text).map_err(|e| Error::script_store(format!("`{}`: {e}", function.bundle_key)))
}

// --- Deploy transaction steps (called by `deploy`).

/// Serializes deploys of one environment: concurrent ones would each see the other's
/// functions as "no longer in the project".
pub(super) async fn lock_environment(
    tx: &mut Transaction<'_, Postgres>,
    environment_id: EnvironmentId,
) -> Result<()> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('lasso.deploy', $1))")
        .bind(environment_id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// What a deploy compares against: the active versions in its scope.
#[derive(FromRow)]
pub(super) struct ActiveVersion {
    pub id: i64,
    pub integration_id: IntegrationId,
    pub integration: String,
    #[sqlx(rename = "type")]
    pub function_type: String,
    pub name: String,
    pub bundle_key: String,
    pub bundle_sha256: String,
    pub config: sqlx::types::Json<Value>,
}

/// The active versions of the environment, or of one of its integrations.
pub(super) async fn active_versions(
    tx: &mut Transaction<'_, Postgres>,
    environment_id: EnvironmentId,
    integration_id: Option<IntegrationId>,
) -> Result<Vec<ActiveVersion>> {
    Ok(sqlx::query_as(
        "SELECT f.id, f.integration_id, i.unique_key AS integration, f.type, f.name,
                f.bundle_key, f.bundle_sha256, f.config
         FROM function_versions f JOIN integrations i ON i.id = f.integration_id
         WHERE f.environment_id = $1 AND f.active
           AND ($2::bigint IS NULL OR f.integration_id = $2)
         ORDER BY f.id
         FOR UPDATE OF f",
    )
    .bind(environment_id)
    .bind(integration_id)
    .fetch_all(&mut **tx)
    .await?)
}

pub(super) async fn deactivate(tx: &mut Transaction<'_, Postgres>, ids: &[i64]) -> Result<()> {
    sqlx::query(
        "UPDATE function_versions SET active = false, deactivated_at = now()
         WHERE id = ANY($1) AND active",
    )
    .bind(ids)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub(super) struct NewVersion<'a> {
    pub environment_id: EnvironmentId,
    pub integration_id: IntegrationId,
    pub name: &'a str,
    pub function_type: FunctionType,
    pub bundle_key: &'a str,
    pub bundle_sha256: &'a str,
    pub config: Value,
    pub deployed_with: DeployTool,
}

pub(super) async fn insert_version(
    tx: &mut Transaction<'_, Postgres>,
    new: NewVersion<'_>,
) -> Result<i64> {
    Ok(sqlx::query_scalar(
        "INSERT INTO function_versions
            (environment_id, integration_id, name, type, bundle_key, bundle_sha256, config,
             deployed_with)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         RETURNING id",
    )
    .bind(new.environment_id)
    .bind(new.integration_id)
    .bind(new.name)
    .bind(new.function_type.as_str())
    .bind(new.bundle_key)
    .bind(new.bundle_sha256)
    .bind(new.config)
    .bind(new.deployed_with.as_str())
    .fetch_one(&mut **tx)
    .await?)
}

/// Bundles by content hash: a runner that runs the same function again does not fetch it again.
#[derive(Default)]
pub struct BundleCache(Mutex<HashMap<String, Arc<Bundle>>>);

const BUNDLE_CACHE_ENTRIES: usize = 256;

impl BundleCache {
    /// The bundle of `function`, fetched from `scripts` unless it is cached.
    pub async fn get(
        &self,
        scripts: &dyn ScriptStore,
        function: &DeployedFunction,
    ) -> Result<Arc<Bundle>> {
        if let Some(bundle) = self
            .0
            .lock()
            .expect("bundle cache")
            .get(&function.bundle_sha256)
        {
            return Ok(bundle.clone());
        }
        let bundle = Arc::new(load_bundle(scripts, function).await?);
        let mut cache = self.0.lock().expect("bundle cache");
        if cache.len() >= BUNDLE_CACHE_ENTRIES {
            cache.clear();
        }
        cache.insert(function.bundle_sha256.clone(), bundle.clone());
        Ok(bundle)
    }
}
