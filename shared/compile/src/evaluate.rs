//! The configuration of a script that `nango.yaml` does not configure, read by running it:
//! its bundle is evaluated in the sandbox and what `createSync` / `createAction` /
//! `createOnEvent` returned is described (see `sandbox::describe`), so variables, spreads,
//! imported constants and concatenations count as they do in Nango, and the kind is what the
//! script exports.

use std::time::Duration;

use serde::Deserialize;
use serde_json::Value as Json;

use lasso_core::scripts::{
    Bundle, Endpoint, FunctionConfig, FunctionType, Model, SyncSettings, SyncType, Trigger,
    check_config, parse_frequency,
};
use lasso_sandbox::{self as sandbox, Limits};

/// A top level that has not settled by then is refused; the memory limit is a run's.
const COMPILE_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Described {
    kind: Option<String>,
    #[serde(default)]
    problems: Vec<String>,
    description: Option<Json>,
    version: Option<Json>,
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default)]
    endpoints: Vec<Json>,
    frequency: Option<Json>,
    auto_start: Option<Json>,
    sync_type: Option<Json>,
    track_deletes: Option<Json>,
    #[serde(default)]
    webhook_subscriptions: Vec<String>,
    event: Option<Json>,
    input: Option<String>,
    #[serde(default)]
    output: Vec<String>,
    #[serde(default)]
    models: Vec<Model>,
}

/// Runs `future` to completion on a runtime of its own (compiling is synchronous; its caller
/// may itself be inside a runtime).
pub(crate) fn block_on<F: std::future::Future + Send>(future: F) -> F::Output
where
    F::Output: Send,
{
    std::thread::scope(|s| {
        s.spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a tokio runtime")
                .block_on(future)
        })
        .join()
        .expect("the evaluation thread")
    })
}

/// What the script's default export says about it: `Ok(None)` for a bare function (its
/// configuration must come from `nango.yaml`), or every problem found.
pub(crate) async fn read(
    bundle: &Bundle,
    integration: &str,
    name: &str,
) -> Result<Option<(FunctionType, FunctionConfig)>, Vec<String>> {
    let limits = Limits {
        timeout: COMPILE_TIMEOUT,
        ..Limits::default()
    };
    let described = sandbox::describe(bundle, integration, name, limits)
        .await
        .map_err(|e| {
            let stack = e.stack.as_deref().and_then(first_frame);
            vec![match stack {
                Some(at) => format!(
                    "evaluating the script to read its configuration failed: {} (at {at})",
                    e.message
                ),
                None => format!(
                    "evaluating the script to read its configuration failed: {}",
                    e.message
                ),
            }]
        })?;
    let d: Described = serde_json::from_value(described)
        .map_err(|e| vec![format!("the configuration cannot be read: {e}")])?;
    let mut problems = d.problems.clone();
    let Some(kind) = d.kind.as_deref() else {
        return if problems.is_empty() {
            Ok(None)
        } else {
            Err(problems)
        };
    };
    let kind = FunctionType::parse(kind).ok_or_else(|| vec![format!("unknown kind `{kind}`")])?;
    let text = |v: &Option<Json>, field: &str, problems: &mut Vec<String>| match v {
        None | Some(Json::Null) => None,
        Some(Json::String(s)) => Some(s.clone()),
        Some(Json::Number(n)) => Some(n.to_string()),
        Some(other) => {
            problems.push(format!("`{field}`: expected a string, got {other}"));
            None
        }
    };
    let flag = |v: &Option<Json>, field: &str, default: bool, problems: &mut Vec<String>| match v {
        None | Some(Json::Null) => default,
        Some(Json::Bool(b)) => *b,
        Some(other) => {
            problems.push(format!("`{field}`: expected true or false, got {other}"));
            default
        }
    };
    let mut endpoints = Vec::new();
    for e in &d.endpoints {
        match serde_json::from_value::<Endpoint>(e.clone()) {
            Ok(endpoint) if endpoint.path.starts_with('/') => endpoints.push(endpoint),
            Ok(endpoint) => problems.push(format!(
                "`endpoints`: path `{}` must start with `/`",
                endpoint.path
            )),
            Err(err) => problems.push(format!("`endpoints`: {err} in {e}")),
        }
    }
    let trigger = match kind {
        FunctionType::Action => Trigger::Action,
        FunctionType::OnEvent => match text(&d.event, "event", &mut problems) {
            Some(event) => Trigger::OnEvent { event },
            None => {
                problems.push("`createOnEvent` needs `event`".into());
                Trigger::Action
            }
        },
        FunctionType::Sync => {
            let runs = text(&d.frequency, "frequency", &mut problems);
            let sync_type = match text(&d.sync_type, "syncType", &mut problems).as_deref() {
                None | Some("full") => SyncType::Full,
                Some("incremental") => SyncType::Incremental,
                Some(other) => {
                    problems.push(format!(
                        "`syncType`: `{other}` is not `full` or `incremental`"
                    ));
                    SyncType::Full
                }
            };
            let auto_start = flag(&d.auto_start, "autoStart", true, &mut problems);
            let track_deletes = flag(&d.track_deletes, "trackDeletes", false, &mut problems);
            match runs {
                None => {
                    problems.push(
                        "`createSync` needs `frequency` (e.g. `frequency: 'every hour'`)".into(),
                    );
                    Trigger::Action
                }
                Some(runs) => match parse_frequency(&runs) {
                    Ok(frequency_secs) => Trigger::Sync(SyncSettings {
                        runs,
                        frequency_secs,
                        sync_type,
                        auto_start,
                        track_deletes,
                        webhook_subscriptions: d.webhook_subscriptions.clone(),
                    }),
                    Err(e) => {
                        problems.push(format!("`frequency`: {e}"));
                        Trigger::Action
                    }
                },
            }
        }
    };
    let config = FunctionConfig {
        trigger,
        description: text(&d.description, "description", &mut problems).unwrap_or_default(),
        version: text(&d.version, "version", &mut problems),
        scopes: d.scopes,
        input: d.input,
        output: d.output,
        models: d.models,
        endpoints,
    };
    if config.function_type() == kind {
        problems.extend(
            check_config(&config)
                .into_iter()
                .map(|(field, message)| format!("`{field}`: {message}")),
        );
    }
    if problems.is_empty() {
        Ok(Some((kind, config)))
    } else {
        Err(problems)
    }
}

/// `    at exec (github/syncs/issues.ts:12:7)` -> `github/syncs/issues.ts:12:7`.
fn first_frame(stack: &str) -> Option<String> {
    let line = stack
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("at "))?;
    let inner = line.rsplit_once('(').map_or(&line[3..], |(_, rest)| rest);
    Some(inner.trim_end_matches(')').to_string())
}
