//! Script projects: a folder with the TypeScript scripts of one or more integrations and their
//! configuration (Nango's `nango.yaml`, or the `createSync({...})` / `createAction({...})`
//! object form in the scripts), compiled into one JavaScript [`Bundle`] per function, stored in
//! the script store under its content hash, and recorded in the control plane
//! (`function_versions`, owned by [`store`]).
//!
//! - `lasso_compile::compile` turns a project directory into a [`CompiledProject`] (or every
//!   problem found, each naming file, line and column): used by `lasso deploy` / `lasso
//!   compile` and tests. The types it produces live here, with the stores that keep them.
//! - [`deploy`] validates a [`DeployRequest`] against an environment, uploads the bundles and
//!   switches the active versions in one transaction.
//! - [`store`] reads what is deployed: the runner loads the active function of (integration,
//!   type, name) with [`store::get_active`] and its bundle with [`store::load_bundle`].

mod bundle;
pub mod deploy;
mod frequency;
pub mod nango_deploy;
pub mod store;

use serde::{Deserialize, Serialize};

pub use bundle::{BUNDLE_FORMAT, Bundle, SDK_MODULE, sha256_hex, store_key};
pub use deploy::{DeployOptions, DeployOutcome, DeployRequest, DeployedRef, deploy, deploy_with};
pub use frequency::{MIN_FREQUENCY_SECS, parse_frequency};
pub use store::DeployTool;

/// One problem found while compiling a project, located in its files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Diagnostic {
    /// Project-relative path, with `/` separators.
    pub file: String,
    /// 1-based; 0 when the problem concerns the whole file.
    pub line: u32,
    /// 1-based; 0 when unknown.
    pub column: u32,
    pub message: String,
}

impl std::fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.line, self.column, self.message
        )
    }
}

/// What kind of function a script is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FunctionType {
    Sync,
    Action,
    OnEvent,
}

impl FunctionType {
    /// The name used in the API and the `function_versions.type` column.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sync => "sync",
            Self::Action => "action",
            Self::OnEvent => "on-event",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "sync" => Some(Self::Sync),
            "action" => Some(Self::Action),
            "on-event" => Some(Self::OnEvent),
            _ => None,
        }
    }

    /// The folder of an integration that holds scripts of this type.
    pub fn folder(self) -> &'static str {
        match self {
            Self::Sync => "syncs",
            Self::Action => "actions",
            Self::OnEvent => "on-events",
        }
    }
}

impl std::fmt::Display for FunctionType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncType {
    Full,
    Incremental,
}

/// The connection events an on-event script can run on (Nango's names).
pub const ON_EVENTS: [&str; 3] = [
    "post-connection-creation",
    "pre-connection-deletion",
    "validate-connection",
];

/// An HTTP endpoint a function is exposed under (Nango's `endpoint(s)`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    pub method: String,
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
}

/// A model a function reads or writes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Model {
    pub name: String,
    /// The fields as written in `nango.yaml` (`__extends` merged in), or `None` for a model
    /// defined with zod (see `json_schema`).
    #[serde(default)]
    pub fields: Option<serde_json::Map<String, serde_json::Value>>,
    /// A zod model as JSON Schema, converted by zod at compile time (Nango's
    /// `models_json_schema` entry of the model).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json_schema: Option<serde_json::Value>,
}

/// The schedule and behaviour of a sync.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SyncSettings {
    /// As written (`every 30 minutes`).
    pub runs: String,
    /// `runs` in seconds, at least [`MIN_FREQUENCY_SECS`].
    pub frequency_secs: u64,
    pub sync_type: SyncType,
    pub auto_start: bool,
    pub track_deletes: bool,
    #[serde(default)]
    pub webhook_subscriptions: Vec<String>,
}

/// What makes a function run, with the settings of that kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Trigger {
    Sync(SyncSettings),
    Action,
    OnEvent { event: String },
}

/// The parsed configuration of one function, as deployed and stored (jsonb).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionConfig {
    #[serde(flatten)]
    pub trigger: Trigger,
    #[serde(default)]
    pub description: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Model name of the input (actions, syncs with an input).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<String>,
    /// Model names: what a sync saves, what an action returns.
    #[serde(default)]
    pub output: Vec<String>,
    /// Every model named by `input` and `output`, with its fields when known.
    #[serde(default)]
    pub models: Vec<Model>,
    #[serde(default)]
    pub endpoints: Vec<Endpoint>,
}

impl FunctionConfig {
    pub fn function_type(&self) -> FunctionType {
        match self.trigger {
            Trigger::Sync(_) => FunctionType::Sync,
            Trigger::Action => FunctionType::Action,
            Trigger::OnEvent { .. } => FunctionType::OnEvent,
        }
    }

    pub fn sync(&self) -> Option<&SyncSettings> {
        match &self.trigger {
            Trigger::Sync(s) => Some(s),
            _ => None,
        }
    }
}

/// One compiled function of a project: its configuration and its bundle (the JSON text of a
/// [`Bundle`], hashed as sent).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompiledFunction {
    /// The integration's unique key.
    pub integration: String,
    pub name: String,
    /// The script it was compiled from (project-relative), for messages.
    pub file: String,
    pub config: FunctionConfig,
    pub bundle: String,
}

impl CompiledFunction {
    pub fn function_type(&self) -> FunctionType {
        self.config.function_type()
    }
}

/// Every function of a project, sorted by (integration, type, name).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompiledProject {
    pub functions: Vec<CompiledFunction>,
}

/// Function names: what Nango accepts as a script file name.
pub fn check_function_name(name: &str) -> std::result::Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 255
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a valid function name: use 1-255 letters, digits, `_` or `-`, starting with a letter or digit"
        ))
    }
}

/// Checks the parts of a configuration that do not depend on where it was read from: the
/// sync frequency, the event name, and that the models named by `input` / `output` are
/// described (a sync's output models need an `id` field when their fields are known).
/// Returns `(field, message)` pairs; used by the compiler and again by the server.
pub fn check_config(config: &FunctionConfig) -> Vec<(&'static str, String)> {
    let mut problems = Vec::new();
    match &config.trigger {
        Trigger::Sync(sync) => {
            match parse_frequency(&sync.runs) {
                Ok(secs) if secs != sync.frequency_secs => problems.push((
                    "frequency_secs",
                    format!(
                        "{} does not match `runs: {}` ({secs} s)",
                        sync.frequency_secs, sync.runs
                    ),
                )),
                Ok(_) => {}
                Err(e) => problems.push(("runs", e)),
            }
            if config.output.is_empty() {
                problems.push(("output", "a sync must name at least one model".into()));
            }
        }
        Trigger::OnEvent { event } => {
            if !ON_EVENTS.contains(&event.as_str()) {
                problems.push((
                    "event",
                    format!("`{event}` is not one of {}", ON_EVENTS.join(", ")),
                ));
            }
        }
        Trigger::Action => {}
    }
    let is_sync = matches!(config.trigger, Trigger::Sync(_));
    let named = config
        .output
        .iter()
        .map(|m| ("output", m))
        .chain(config.input.iter().map(|m| ("input", m)));
    for (field, name) in named {
        match config.models.iter().find(|m| &m.name == name) {
            None => problems.push((field, format!("model `{name}` is not defined"))),
            Some(Model {
                fields: Some(fields),
                ..
            }) if is_sync && field == "output" && !fields.contains_key("id") => problems.push((
                "output",
                format!("model `{name}` has no `id` field; records are keyed by it"),
            )),
            Some(Model {
                json_schema: Some(schema),
                ..
            }) if is_sync
                && field == "output"
                && schema
                    .get("properties")
                    .is_some_and(|p| p.get("id").is_none()) =>
            {
                problems.push((
                    "output",
                    format!("model `{name}` has no `id` field; records are keyed by it"),
                ))
            }
            Some(_) => {}
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    for model in &config.output {
        if !seen.insert(model) {
            problems.push(("output", format!("model `{model}` is listed twice")));
        }
    }
    problems
}
