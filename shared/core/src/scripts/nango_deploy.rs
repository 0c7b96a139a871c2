//! Nango's deploy protocol, as the official `nango` CLI speaks it: `POST /sync/deploy/
//! confirmation` (what a deploy would change) then `POST /sync/deploy` (apply it). Both carry
//! `flowConfigs`, one per sync or action, and `onEventScriptsByProvider`.
//!
//! The server never evaluates JavaScript: a flowConfig's configuration (models, frequency,
//! endpoints, `models_json_schema`) is taken as the CLI sent it and checked as `lasso deploy`'s
//! is, and its `fileBody.js` (the CLI's CommonJS bundle of the script) becomes the single
//! `.cjs` module of the function's [`Bundle`], which the runner's sandbox loads as CommonJS.
//! Applying goes through [`deploy_with`], the path of `lasso deploy`: all or nothing.

use crate::EnvironmentId;
use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sqlx::PgPool;

use super::deploy::{DeployOptions, DeployOutcome, DeployRequest, DeployedRef, deploy_with};
use super::store::{self, DeployTool};
use super::{
    BUNDLE_FORMAT, Bundle, CompiledFunction, Endpoint, FunctionConfig, FunctionType, Model,
    SyncSettings, SyncType, Trigger, parse_frequency,
};
use crate::adapters::ScriptStore;
use crate::{Error, Result};

/// The body of both endpoints. Fields the CLI sends that Lasso has no use for (`debug`,
/// `sdkVersion`, `nangoYamlBody`, `source`) are accepted and ignored.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NangoDeployBody {
    #[serde(default)]
    pub flow_configs: Vec<FlowConfig>,
    #[serde(default)]
    pub on_event_scripts_by_provider: Option<Vec<OnEventScripts>>,
    /// `all` (the default), `integration` or `single`.
    #[serde(default)]
    pub deploy_mode: Option<String>,
    /// Whether functions in scope that the body does not contain are removed.
    #[serde(default)]
    pub reconcile: bool,
}

/// One sync or action.
#[derive(Debug, Clone, Deserialize)]
pub struct FlowConfig {
    #[serde(rename = "syncName")]
    pub sync_name: String,
    #[serde(rename = "providerConfigKey")]
    pub provider_config_key: String,
    #[serde(rename = "type")]
    pub function_type: String,
    /// Output model names.
    #[serde(default)]
    pub models: Vec<String>,
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub runs: Option<String>,
    #[serde(default)]
    pub track_deletes: Option<bool>,
    #[serde(default)]
    pub auto_start: Option<bool>,
    #[serde(default)]
    pub sync_type: Option<String>,
    #[serde(default)]
    pub input: Option<String>,
    #[serde(default)]
    pub metadata: Option<FlowMetadata>,
    #[serde(default)]
    pub endpoints: Option<Vec<Endpoint>>,
    #[serde(default, rename = "webhookSubscriptions")]
    pub webhook_subscriptions: Option<Vec<String>>,
    /// `{"definitions": {Model: JSON Schema}}`, from the script's zod models.
    #[serde(default)]
    pub models_json_schema: Option<Value>,
    #[serde(rename = "fileBody")]
    pub file_body: FileBody,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct FlowMetadata {
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub scopes: Option<Vec<String>>,
}

/// The script: `js` is the CLI's CommonJS bundle, `ts` its TypeScript entry (unused).
#[derive(Debug, Clone, Deserialize)]
pub struct FileBody {
    pub js: String,
    #[serde(default)]
    pub ts: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct OnEventScripts {
    #[serde(rename = "providerConfigKey")]
    pub provider_config_key: String,
    pub scripts: Vec<OnEventScript>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct OnEventScript {
    pub name: String,
    pub event: String,
    #[serde(rename = "fileBody")]
    pub file_body: FileBody,
}

/// A sync in the confirmation (Nango's `SlimSync`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SlimSync {
    pub name: String,
    #[serde(rename = "providerConfigKey")]
    pub provider_config_key: String,
    pub auto_start: bool,
    /// Connections of the integration: each gets (or loses) a schedule of this sync.
    pub connections: i64,
}

/// An action or on-event script in the confirmation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SlimFunction {
    pub name: String,
    #[serde(rename = "providerConfigKey")]
    pub provider_config_key: String,
}

/// The answer of `POST /sync/deploy/confirmation`, the fields the CLI prints its plan from.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Confirmation {
    pub new_syncs: Vec<SlimSync>,
    pub updated_syncs: Vec<SlimSync>,
    pub deleted_syncs: Vec<SlimSync>,
    pub new_actions: Vec<SlimFunction>,
    pub updated_actions: Vec<SlimFunction>,
    pub deleted_actions: Vec<SlimFunction>,
    pub new_on_event_scripts: Vec<SlimFunction>,
    pub updated_on_event_scripts: Vec<SlimFunction>,
    pub deleted_on_event_scripts: Vec<SlimFunction>,
    /// Models no sync saves any more after the deploy (their records stay, unread).
    pub deleted_models: Vec<String>,
}

/// One deployed function in the answer of `POST /sync/deploy` (the CLI prints
/// `name@v<version>`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeployedSync {
    pub id: i64,
    pub name: String,
    #[serde(rename = "providerConfigKey")]
    pub provider_config_key: String,
    #[serde(rename = "type")]
    pub function_type: FunctionType,
    /// The version the script declares, or the id of the stored version when it declares none.
    pub version: String,
    pub models: Vec<String>,
}

/// What `POST /sync/deploy/confirmation` answers: the deploy worked out, nothing stored.
pub async fn confirmation(
    db: &PgPool,
    scripts: &dyn ScriptStore,
    environment_id: EnvironmentId,
    body: &NangoDeployBody,
) -> Result<Confirmation> {
    let (request, mut options) = to_request(body)?;
    // The CLI asks with `reconcile: false`, then deploys with `reconcile: true`: the plan
    // shows what the deploy will remove.
    options.remove_missing = body.deploy_mode.as_deref() != Some("single");
    options.preview = true;
    let deleted_models = deleted_models(db, environment_id, &request, options).await?;
    let outcome = deploy_with(db, scripts, environment_id, request.clone(), options).await?;
    let mut out = Confirmation {
        deleted_models,
        ..Confirmation::default()
    };
    let auto_start = |r: &DeployedRef| {
        request
            .functions
            .iter()
            .find(|f| f.integration == r.integration && f.name == r.name)
            .and_then(|f| f.config.sync())
            .is_none_or(|s| s.auto_start)
    };
    let mut counts: BTreeMap<String, i64> = BTreeMap::new();
    for (refs, syncs, others, events) in [
        (
            &outcome.created,
            &mut out.new_syncs,
            &mut out.new_actions,
            &mut out.new_on_event_scripts,
        ),
        (
            &outcome.updated,
            &mut out.updated_syncs,
            &mut out.updated_actions,
            &mut out.updated_on_event_scripts,
        ),
        (
            &outcome.deleted,
            &mut out.deleted_syncs,
            &mut out.deleted_actions,
            &mut out.deleted_on_event_scripts,
        ),
    ] {
        for r in refs {
            let slim = SlimFunction {
                name: r.name.clone(),
                provider_config_key: r.integration.clone(),
            };
            match r.function_type {
                FunctionType::Sync => {
                    let connections = match counts.get(&r.integration) {
                        Some(n) => *n,
                        None => {
                            let integration =
                                crate::integrations::get(db, environment_id, &r.integration)
                                    .await?;
                            let n = crate::connections::count_for_integration(db, integration.id)
                                .await?;
                            counts.insert(r.integration.clone(), n);
                            n
                        }
                    };
                    syncs.push(SlimSync {
                        name: slim.name,
                        provider_config_key: slim.provider_config_key,
                        auto_start: auto_start(r),
                        connections,
                    });
                }
                FunctionType::Action => others.push(slim),
                FunctionType::OnEvent => events.push(slim),
            }
        }
    }
    Ok(out)
}

/// What `POST /sync/deploy` does: deploys the body, all or nothing, recorded as deployed with
/// Nango's CLI.
pub async fn deploy(
    db: &PgPool,
    scripts: &dyn ScriptStore,
    environment_id: EnvironmentId,
    body: &NangoDeployBody,
) -> Result<(DeployOutcome, Vec<DeployedSync>)> {
    let (request, options) = to_request(body)?;
    let outcome = deploy_with(db, scripts, environment_id, request.clone(), options).await?;
    let mut deployed = Vec::new();
    let mut integration_ids = BTreeMap::new();
    for f in &request.functions {
        let integration_id = match integration_ids.get(&f.integration) {
            Some(id) => *id,
            None => {
                let id = crate::integrations::get(db, environment_id, &f.integration)
                    .await?
                    .id;
                integration_ids.insert(f.integration.clone(), id);
                id
            }
        };
        let kind = f.function_type();
        let Some(active) = store::find_active(db, integration_id, kind, &f.name).await? else {
            // A deploy running right after this one already replaced it.
            continue;
        };
        deployed.push(DeployedSync {
            id: active.id,
            name: f.name.clone(),
            provider_config_key: f.integration.clone(),
            function_type: kind,
            version: f
                .config
                .version
                .clone()
                .unwrap_or_else(|| active.id.to_string()),
            models: f.config.output.clone(),
        });
    }
    Ok((outcome, deployed))
}

/// The body as a [`DeployRequest`] with the options its `deployMode` and `reconcile` ask for.
pub fn to_request(body: &NangoDeployBody) -> Result<(DeployRequest, DeployOptions)> {
    let mut functions = Vec::new();
    for (i, flow) in body.flow_configs.iter().enumerate() {
        functions.push(flow_function(i, flow)?);
    }
    for (i, group) in body
        .on_event_scripts_by_provider
        .iter()
        .flatten()
        .enumerate()
    {
        for (j, script) in group.scripts.iter().enumerate() {
            let at = format!("onEventScriptsByProvider[{i}].scripts[{j}]");
            functions.push(CompiledFunction {
                integration: group.provider_config_key.clone(),
                name: script.name.clone(),
                file: source_file(
                    &group.provider_config_key,
                    FunctionType::OnEvent,
                    &script.name,
                ),
                config: FunctionConfig {
                    trigger: Trigger::OnEvent {
                        event: script.event.clone(),
                    },
                    description: String::new(),
                    version: None,
                    scopes: Vec::new(),
                    input: None,
                    output: Vec::new(),
                    models: Vec::new(),
                    endpoints: Vec::new(),
                },
                bundle: commonjs_bundle(
                    &format!("{at}.fileBody.js"),
                    &group.provider_config_key,
                    FunctionType::OnEvent,
                    &script.name,
                    &script.file_body.js,
                )?,
            });
        }
    }
    let mode = body.deploy_mode.as_deref().unwrap_or("all");
    let integration = match mode {
        "all" | "single" => None,
        "integration" => {
            let keys: BTreeSet<&str> = functions.iter().map(|f| f.integration.as_str()).collect();
            match keys.into_iter().collect::<Vec<_>>().as_slice() {
                [one] => Some(one.to_string()),
                [] => {
                    return Err(Error::invalid(
                        "flowConfigs",
                        "an integration deploy needs at least one function",
                    ));
                }
                many => {
                    return Err(Error::invalid(
                        "flowConfigs",
                        format!(
                            "an integration deploy covers one integration, these name {}",
                            many.join(", ")
                        ),
                    ));
                }
            }
        }
        other => {
            return Err(Error::invalid(
                "deployMode",
                format!("`{other}` is not all, integration or single"),
            ));
        }
    };
    let options = DeployOptions {
        tool: DeployTool::Nango,
        remove_missing: body.reconcile && mode != "single",
        preview: false,
    };
    Ok((
        DeployRequest {
            integration,
            functions,
        },
        options,
    ))
}

fn source_file(integration: &str, kind: FunctionType, name: &str) -> String {
    format!("{integration}/{}/{name}.ts", kind.folder())
}

/// The stored bundle of a CLI script: its CommonJS text as the one module, `.cjs`.
fn commonjs_bundle(
    field: &str,
    integration: &str,
    kind: FunctionType,
    name: &str,
    js: &str,
) -> Result<String> {
    if js.trim().is_empty() {
        return Err(Error::invalid(field, "the script's bundle is empty"));
    }
    let entry = format!("{integration}/{}/{name}.cjs", kind.folder());
    let bundle = Bundle {
        format: BUNDLE_FORMAT,
        entry: entry.clone(),
        modules: BTreeMap::from([(entry, js.to_string())]),
        source_maps: BTreeMap::new(),
    };
    Bundle::parse(&bundle.to_json()).map_err(|e| Error::invalid(field, e))?;
    Ok(bundle.to_json())
}

fn flow_function(i: usize, flow: &FlowConfig) -> Result<CompiledFunction> {
    let at = |field: &str| format!("flowConfigs[{i}].{field}");
    let kind = match flow.function_type.as_str() {
        "sync" => FunctionType::Sync,
        "action" => FunctionType::Action,
        other => {
            return Err(Error::invalid(
                at("type"),
                format!("`{other}` is not sync or action"),
            ));
        }
    };
    let definitions: Map<String, Value> = match &flow.models_json_schema {
        None | Some(Value::Null) => Map::new(),
        Some(schema) => match schema.get("definitions") {
            Some(Value::Object(d)) => d.clone(),
            None | Some(Value::Null) => Map::new(),
            Some(_) => {
                return Err(Error::invalid(
                    at("models_json_schema.definitions"),
                    "expected an object of model name -> JSON Schema",
                ));
            }
        },
    };
    let mut model_names: Vec<&String> = flow.models.iter().collect();
    model_names.extend(flow.input.iter());
    let mut seen = BTreeSet::new();
    let models = model_names
        .into_iter()
        .filter(|name| seen.insert(name.as_str()))
        .map(|name| Model {
            name: name.clone(),
            fields: None,
            json_schema: definitions.get(name).cloned(),
        })
        .collect();
    let trigger = match kind {
        FunctionType::Sync => {
            let runs = flow
                .runs
                .clone()
                .filter(|r| !r.trim().is_empty())
                .ok_or_else(|| Error::invalid(at("runs"), "a sync needs a frequency"))?;
            let frequency_secs =
                parse_frequency(&runs).map_err(|e| Error::invalid(at("runs"), e))?;
            let sync_type = match flow.sync_type.as_deref().map(str::to_ascii_lowercase) {
                None => SyncType::Full,
                Some(t) if t == "full" => SyncType::Full,
                Some(t) if t == "incremental" => SyncType::Incremental,
                Some(t) => {
                    return Err(Error::invalid(
                        at("sync_type"),
                        format!("`{t}` is not full or incremental"),
                    ));
                }
            };
            Trigger::Sync(SyncSettings {
                runs,
                frequency_secs,
                sync_type,
                // Nango starts a sync on new connections unless told not to.
                auto_start: flow.auto_start.unwrap_or(true),
                track_deletes: flow.track_deletes.unwrap_or(false),
                webhook_subscriptions: flow.webhook_subscriptions.clone().unwrap_or_default(),
            })
        }
        _ => Trigger::Action,
    };
    let metadata = flow.metadata.clone().unwrap_or_default();
    Ok(CompiledFunction {
        integration: flow.provider_config_key.clone(),
        name: flow.sync_name.clone(),
        file: source_file(&flow.provider_config_key, kind, &flow.sync_name),
        config: FunctionConfig {
            trigger,
            description: metadata.description.unwrap_or_default(),
            version: flow.version.clone().filter(|v| !v.is_empty()),
            scopes: metadata.scopes.unwrap_or_default(),
            input: flow.input.clone(),
            output: flow.models.clone(),
            models,
            endpoints: flow.endpoints.clone().unwrap_or_default(),
        },
        bundle: commonjs_bundle(
            &at("fileBody.js"),
            &flow.provider_config_key,
            kind,
            &flow.sync_name,
            &flow.file_body.js,
        )?,
    })
}

/// Models the active syncs in the deploy's scope save that no sync will save after it.
async fn deleted_models(
    db: &PgPool,
    environment_id: EnvironmentId,
    request: &DeployRequest,
    options: DeployOptions,
) -> Result<Vec<String>> {
    let mut keys: BTreeSet<String> = request
        .functions
        .iter()
        .map(|f| f.integration.clone())
        .collect();
    if options.remove_missing && request.integration.is_none() {
        keys.extend(
            crate::integrations::list(db, environment_id)
                .await?
                .into_iter()
                .map(|i| i.unique_key),
        );
    }
    let mut deleted = BTreeSet::new();
    for key in keys {
        let Ok(integration) = crate::integrations::get(db, environment_id, &key).await else {
            // An unknown integration: the deploy itself reports it.
            continue;
        };
        let requested: BTreeMap<&str, &Vec<String>> = request
            .functions
            .iter()
            .filter(|f| f.integration == key && f.function_type() == FunctionType::Sync)
            .map(|f| (f.name.as_str(), &f.config.output))
            .collect();
        let mut old = BTreeSet::new();
        let mut new: BTreeSet<&str> = requested
            .values()
            .flat_map(|o| o.iter())
            .map(String::as_str)
            .collect();
        let active = store::list_active(db, integration.id).await?;
        for f in active
            .iter()
            .filter(|f| f.function_type == FunctionType::Sync)
        {
            old.extend(f.config.output.iter().map(String::as_str));
            if !requested.contains_key(f.name.as_str()) && !options.remove_missing {
                new.extend(f.config.output.iter().map(String::as_str));
            }
        }
        deleted.extend(old.difference(&new).map(|m| m.to_string()));
    }
    Ok(deleted.into_iter().collect())
}
