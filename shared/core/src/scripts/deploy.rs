//! Deploying a compiled project to an environment, all or nothing: everything is validated,
//! then every bundle is uploaded, then one transaction switches the active versions. A failure
//! before the commit leaves what was deployed untouched.
//!
//! As `nango deploy` does, a deploy reconciles: a function that was deployed before and is not
//! in the request any more is removed (its active version deactivated, kept for history). The
//! scope of that is the whole environment, or one integration when the request names one.

use crate::{EnvironmentId, IntegrationId};
use std::collections::{BTreeMap, BTreeSet, HashMap};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;

use super::bundle::{sha256_hex, store_key};
use super::store::{self, DeployTool, NewVersion};
use super::{Bundle, CompiledFunction, FunctionType, check_config, check_function_name};
use crate::adapters::ScriptStore;
use crate::{Error, Result};

/// The body of `POST /scripts/deploy`: a compiled project.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeployRequest {
    /// Limits the deploy, and the removal of functions it no longer contains, to this
    /// integration. Without it the whole environment is reconciled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub integration: Option<String>,
    pub functions: Vec<CompiledFunction>,
}

/// A function named in a deploy's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeployedRef {
    pub integration: String,
    #[serde(rename = "type")]
    pub function_type: FunctionType,
    pub name: String,
    /// The bundle now active (for `deleted`: the one that was).
    pub bundle_key: String,
}

/// What a deploy changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeployOutcome {
    /// Functions that were not deployed before.
    pub created: Vec<DeployedRef>,
    /// Functions whose bundle or configuration changed: a new version is active.
    pub updated: Vec<DeployedRef>,
    /// Functions deployed as they were: nothing stored.
    pub unchanged: Vec<DeployedRef>,
    /// Functions no longer in the project: deactivated.
    pub deleted: Vec<DeployedRef>,
}

/// How a deploy is applied, beyond what its request says.
#[derive(Debug, Clone, Copy)]
pub struct DeployOptions {
    /// Recorded on every version the deploy creates.
    pub tool: DeployTool,
    /// Deactivate the functions in scope the request does not contain (the reconciliation
    /// above). `false` deploys some functions and leaves the others alone (`nango deploy
    /// --sync x`).
    pub remove_missing: bool,
    /// Work out what the deploy would change, store nothing (no upload; the transaction is
    /// rolled back), as `nango deploy` asks before it deploys.
    pub preview: bool,
}

impl Default for DeployOptions {
    fn default() -> Self {
        Self {
            tool: DeployTool::Lasso,
            remove_missing: true,
            preview: false,
        }
    }
}

/// Validates the request against the environment's integrations, uploads the bundles and
/// switches the active versions.
pub async fn deploy(
    db: &PgPool,
    scripts: &dyn ScriptStore,
    environment_id: EnvironmentId,
    request: DeployRequest,
) -> Result<DeployOutcome> {
    deploy_with(
        db,
        scripts,
        environment_id,
        request,
        DeployOptions::default(),
    )
    .await
}

/// [`deploy`] with [`DeployOptions`].
pub async fn deploy_with(
    db: &PgPool,
    scripts: &dyn ScriptStore,
    environment_id: EnvironmentId,
    request: DeployRequest,
    options: DeployOptions,
) -> Result<DeployOutcome> {
    validate(&request)?;

    let mut integration_ids: BTreeMap<&str, IntegrationId> = BTreeMap::new();
    let keys = request
        .integration
        .iter()
        .chain(request.functions.iter().map(|f| &f.integration));
    for key in keys {
        if !integration_ids.contains_key(key.as_str()) {
            let integration = crate::integrations::get(db, environment_id, key).await?;
            integration_ids.insert(key, integration.id);
        }
    }

    let hashed: Vec<(String, String)> = request
        .functions
        .iter()
        .map(|f| {
            let sha = sha256_hex(f.bundle.as_bytes());
            (store_key(&sha), sha)
        })
        .collect();
    // Upload first: a row is only ever committed for a bundle that is in the store. The key is
    // the content hash, so uploading the same bundle again changes nothing.
    let mut uploads = BTreeMap::new();
    for (f, (key, _)) in request.functions.iter().zip(&hashed) {
        if !options.preview {
            uploads.insert(key.clone(), f.bundle.clone());
        }
    }
    futures::future::try_join_all(
        uploads
            .into_iter()
            .map(|(key, bundle)| async move { scripts.put(&key, Bytes::from(bundle)).await }),
    )
    .await?;

    let scope = request.integration.as_deref().map(|k| integration_ids[k]);
    let mut tx = db.begin().await?;
    store::lock_environment(&mut tx, environment_id).await?;
    let active = store::active_versions(&mut tx, environment_id, scope).await?;
    let mut current: HashMap<(IntegrationId, String, String), store::ActiveVersion> = active
        .into_iter()
        .map(|v| {
            (
                (v.integration_id, v.function_type.clone(), v.name.clone()),
                v,
            )
        })
        .collect();

    let mut outcome = DeployOutcome::default();
    for (f, (key, sha)) in request.functions.iter().zip(&hashed) {
        let integration_id = integration_ids[f.integration.as_str()];
        let kind = f.function_type();
        let config = serde_json::to_value(&f.config).expect("a configuration serializes");
        let reference = DeployedRef {
            integration: f.integration.clone(),
            function_type: kind,
            name: f.name.clone(),
            bundle_key: key.clone(),
        };
        let previous = current.remove(&(integration_id, kind.as_str().to_string(), f.name.clone()));
        match previous {
            Some(old) if &old.bundle_sha256 == sha && old.config.0 == config => {
                outcome.unchanged.push(reference);
                continue;
            }
            Some(old) => {
                store::deactivate(&mut tx, &[old.id]).await?;
                outcome.updated.push(reference);
            }
            None => outcome.created.push(reference),
        }
        store::insert_version(
            &mut tx,
            NewVersion {
                environment_id,
                integration_id,
                name: &f.name,
                function_type: kind,
                bundle_key: key,
                bundle_sha256: sha,
                config,
                deployed_with: options.tool,
            },
        )
        .await?;
    }

    let mut removed: Vec<store::ActiveVersion> = if options.remove_missing {
        current.into_values().collect()
    } else {
        Vec::new()
    };
    removed.sort_by_key(|v| v.id);
    store::deactivate(&mut tx, &removed.iter().map(|v| v.id).collect::<Vec<_>>()).await?;
    // Schedules follow in the same transaction: new syncs get one per connection, removed
    // ones are deleted, changed frequencies apply.
    crate::queue::schedules::reconcile(
        &mut *tx,
        crate::queue::schedules::ReconcileScope::environment(environment_id),
    )
    .await?;
    for v in removed {
        outcome.deleted.push(DeployedRef {
            function_type: FunctionType::parse(&v.function_type).ok_or_else(|| {
                Error::Internal(format!(
                    "function type `{}` in the database",
                    v.function_type
                ))
            })?,
            integration: v.integration,
            name: v.name,
            bundle_key: v.bundle_key,
        });
    }
    if options.preview {
        tx.rollback().await?;
    } else {
        tx.commit().await?;
    }
    Ok(outcome)
}

/// Everything that can be checked without the database, with errors naming the request field
/// and the script.
fn validate(request: &DeployRequest) -> Result<()> {
    let mut seen = BTreeSet::new();
    let mut model_owner: HashMap<(&str, &str), &str> = HashMap::new();
    for (i, f) in request.functions.iter().enumerate() {
        let at = |field: &str| format!("functions[{i}].{field}");
        let what = format!("{}: {} `{}`", f.file, f.function_type(), f.name);
        check_function_name(&f.name).map_err(|e| Error::invalid(at("name"), e))?;
        if let Some(scope) = &request.integration
            && &f.integration != scope
        {
            return Err(Error::invalid(
                at("integration"),
                format!(
                    "{what} belongs to `{}`, but the deploy is limited to `{scope}`",
                    f.integration
                ),
            ));
        }
        if !seen.insert((&f.integration, f.function_type(), &f.name)) {
            return Err(Error::invalid(
                at("name"),
                format!("{what} of integration `{}` appears twice", f.integration),
            ));
        }
        if let Some((field, message)) = check_config(&f.config).into_iter().next() {
            return Err(Error::invalid(
                at(&format!("config.{field}")),
                format!("{what}: {message}"),
            ));
        }
        Bundle::parse(&f.bundle)
            .map_err(|e| Error::invalid(at("bundle"), format!("{what}: {e}")))?;
        if f.function_type() == FunctionType::Sync {
            for model in &f.config.output {
                if let Some(other) = model_owner.insert((&f.integration, model), &f.name) {
                    return Err(Error::invalid(
                        at("config.output"),
                        format!("{what} saves model `{model}`, which sync `{other}` saves too"),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// The deploy's operation log: one message per function it created, updated or removed, or the
/// reason it was refused (nothing changed then).
pub fn operation_log(
    environment_id: EnvironmentId,
    integration: Option<&str>,
    result: std::result::Result<&DeployOutcome, &Error>,
) -> crate::logs::LogBatch {
    use crate::logs::{Level, MessageKind, OperationKind, OperationLog, OperationState};
    let mut log = OperationLog::start(
        environment_id,
        OperationKind::Deploy,
        integration,
        None,
        None,
    );
    match result {
        Ok(outcome) => {
            for (change, refs) in [
                ("created", &outcome.created),
                ("updated", &outcome.updated),
                ("deleted", &outcome.deleted),
            ] {
                for f in refs {
                    log.message(
                        Level::Info,
                        MessageKind::Log,
                        &format!(
                            "{change} {} {}/{}",
                            f.function_type.as_str(),
                            f.integration,
                            f.name
                        ),
                        serde_json::json!({"change": change, "integration": f.integration,
                                           "type": f.function_type, "name": f.name,
                                           "bundle_key": f.bundle_key}),
                    );
                }
            }
            log.set_meta(
                "result",
                serde_json::json!({"created": outcome.created.len(), "updated": outcome.updated.len(),
                                   "unchanged": outcome.unchanged.len(), "deleted": outcome.deleted.len()}),
            );
            log.finish(OperationState::Success, None)
        }
        Err(e) => log.finish(OperationState::Failed, Some(&e.to_string())),
    }
}
