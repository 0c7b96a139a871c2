//! Syncs as Nango's API shows them: trigger a run now, pause and start schedules, change a
//! connection's frequency, read their status. Schedules and their tasks live in the queue
//! ([`schedules`], [`tasks`]).

use crate::{ConnectionRowId, EnvironmentId};
use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::context::Context;
use crate::integrations::{self, Integration};
use crate::queue::schedules::{self, ReconcileScope, Schedule, ScheduleState};
use crate::queue::{FunctionPayload, ModelResult, Payload};
use crate::queue::{Task, TaskState, tasks};
use crate::records::{self, DEFAULT_VARIANT, Scope};
use crate::scripts::store::{self, DeployedFunction};
use crate::scripts::{FunctionType, SyncType, parse_frequency};
use crate::{Error, ErrorCode, Result, checkpoints, connections, dispatcher, webhooks};

/// Attempts of one sync run: a run whose runner died expires and is tried again.
pub const SYNC_MAX_ATTEMPTS: i32 = 3;

/// A sync as clients name it: `"name"`, `"name::variant"` or `{"name", "variant"}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum SyncIdentifier {
    Name(String),
    WithVariant { name: String, variant: String },
}

impl SyncIdentifier {
    /// The sync's name; Lasso has no variants but the base one.
    pub fn into_name(self) -> Result<String> {
        let (name, variant) = match self {
            Self::Name(text) => match text.split_once("::") {
                Some((name, variant)) => (name.to_string(), variant.to_string()),
                None => (text, DEFAULT_VARIANT.to_string()),
            },
            Self::WithVariant { name, variant } => (name, variant),
        };
        if name.is_empty() {
            return Err(Error::invalid("syncs", "a sync name is empty"));
        }
        if variant != DEFAULT_VARIANT {
            return Err(unknown_sync(format!(
                "sync `{name}` has no variant `{variant}`: Lasso has only `{DEFAULT_VARIANT}`"
            )));
        }
        Ok(name)
    }
}

fn unknown_sync(message: String) -> Error {
    Error::NotFound {
        code: ErrorCode::UnknownSync,
        message,
    }
}

/// What a sync API call is about.
#[derive(Debug, Clone)]
pub struct Selection {
    pub provider_config_key: String,
    /// One connection, or every connection of the integration.
    pub connection_id: Option<String>,
    /// Sync names; empty means every sync of the integration.
    pub syncs: Vec<String>,
}

/// How a triggered run starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncMode {
    /// From where the last run left off.
    Incremental,
    /// From nothing: checkpoint cleared, a full run that detects deletions.
    FullRefresh,
    /// As `FullRefresh`, and the connection's records of the sync's models are removed first.
    FullRefreshAndClearCache,
}

impl SyncMode {
    /// From Nango's request fields: `sync_mode` wins, then the Node client's `opts` (`reset`,
    /// `emptyCache`), then the legacy `full_resync`.
    pub fn from_request(
        sync_mode: Option<&str>,
        reset: bool,
        empty_cache: bool,
        full_resync: bool,
    ) -> Result<Self> {
        Ok(match sync_mode {
            Some("incremental") => Self::Incremental,
            Some("full_refresh") => Self::FullRefresh,
            Some("full_refresh_and_clear_cache") => Self::FullRefreshAndClearCache,
            Some(other) => {
                return Err(Error::invalid(
                    "sync_mode",
                    format!(
                        "`{other}` is not incremental, full_refresh or full_refresh_and_clear_cache"
                    ),
                ));
            }
            None if reset && empty_cache => Self::FullRefreshAndClearCache,
            None if reset || full_resync => Self::FullRefresh,
            None => Self::Incremental,
        })
    }
}

/// The selection checked against the environment: its integration, connection and syncs.
struct Target {
    integration: Integration,
    /// The connection's row id.
    connection: Option<ConnectionRowId>,
    /// The selected syncs, by name.
    syncs: BTreeMap<String, DeployedFunction>,
}

impl Target {
    fn selected(&self, environment_id: EnvironmentId) -> schedules::Selected {
        schedules::Selected {
            environment_id,
            integration_id: self.integration.id,
            connection: self.connection,
            names: self.syncs.keys().cloned().collect(),
        }
    }
}

/// `unknown_provider_config`, `unknown_connection` or `unknown_sync` for what the environment
/// does not have.
async fn resolve(
    ctx: &Context,
    environment_id: EnvironmentId,
    selection: &Selection,
) -> Result<Target> {
    let integration =
        integrations::get(&ctx.db, environment_id, &selection.provider_config_key).await?;
    let connection = match &selection.connection_id {
        Some(id) => Some(
            connections::row_id(&ctx.db, environment_id, &selection.provider_config_key, id)
                .await?,
        ),
        None => None,
    };
    let mut deployed: BTreeMap<String, DeployedFunction> =
        store::list_active(&ctx.db, integration.id)
            .await?
            .into_iter()
            .filter(|f| f.function_type == FunctionType::Sync)
            .map(|f| (f.name.clone(), f))
            .collect();
    let syncs = if selection.syncs.is_empty() {
        deployed
    } else {
        let mut chosen = BTreeMap::new();
        for name in &selection.syncs {
            let function = deployed.remove(name).ok_or_else(|| {
                unknown_sync(format!(
                    "integration `{}` has no sync `{name}`",
                    selection.provider_config_key
                ))
            })?;
            chosen.insert(name.clone(), function);
        }
        chosen
    };
    Ok(Target {
        integration,
        connection,
        syncs,
    })
}

/// A call that would change nothing because no connection has the selected syncs.
fn none_found(selection: &Selection) -> Error {
    Error::NotFound {
        code: ErrorCode::NoSyncsFound,
        message: match &selection.connection_id {
            Some(c) => format!("connection `{c}` has none of the selected syncs"),
            None => format!(
                "no connection of integration `{}` has the selected syncs",
                selection.provider_config_key
            ),
        },
    }
}

/// The target's schedules (`lock`: see [`schedules::find`]); `no_syncs_found` when none.
async fn selected<'e>(
    db: impl sqlx::PgExecutor<'e>,
    environment_id: EnvironmentId,
    target: &Target,
    selection: &Selection,
    lock: bool,
) -> Result<Vec<Schedule>> {
    let found = schedules::find(db, &target.selected(environment_id), lock).await?;
    if found.is_empty() {
        return Err(none_found(selection));
    }
    Ok(found)
}

fn describe(schedules: &[&Schedule]) -> String {
    schedules
        .iter()
        .map(|s| format!("`{}` of connection `{}`", s.function_name, s.connection_id))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Creates a run now for each selected schedule (PAUSED ones too: a manual run does not change
/// the schedule), all or nothing: when one of them is running, nothing is triggered and the
/// answer is a conflict naming it. A full refresh clears the checkpoints (and, clearing the
/// cache, the records) in the same transaction. Returns the created tasks' ids.
pub async fn trigger(
    ctx: &Context,
    environment_id: EnvironmentId,
    selection: &Selection,
    mode: SyncMode,
) -> Result<Vec<Uuid>> {
    let target = resolve(ctx, environment_id, selection).await?;
    let mut tx = ctx.db.begin().await?;
    let found = selected(&mut *tx, environment_id, &target, selection, true).await?;
    let ids: Vec<Uuid> = found.iter().map(|s| s.id).collect();
    let created = schedules::create_tasks(
        &mut tx,
        &ids,
        mode != SyncMode::Incremental,
        SYNC_MAX_ATTEMPTS,
    )
    .await?;
    if created.len() < found.len() {
        let running: Vec<&Schedule> = found
            .iter()
            .filter(|s| !created.iter().any(|(_, schedule)| *schedule == s.id))
            .collect();
        return Err(Error::Conflict(format!(
            "sync {} is running; nothing was triggered. Try again when it has finished, or pause it to cancel the run",
            describe(&running)
        )));
    }
    if mode != SyncMode::Incremental {
        for s in &found {
            checkpoints::clear(&mut *tx, s.connection, &s.function_name).await?;
            if mode == SyncMode::FullRefreshAndClearCache {
                for model in &target.syncs[&s.function_name].config.output {
                    records::clear(&mut *tx, &Scope::new(s.connection, model, None)).await?;
                }
            }
        }
    }
    tx.commit().await?;
    // The runs are committed; hand them to the runners now rather than at the next tick.
    if let Err(e) = dispatcher::dispatch_all(ctx).await {
        tracing::warn!(error = %e, "dispatching triggered syncs failed; the scheduler will");
    }
    Ok(created.into_iter().map(|(task, _)| task).collect())
}

/// Pauses the selected schedules and cancels their active runs; a running script stops at its
/// runner's next heartbeat.
pub async fn pause(
    ctx: &Context,
    environment_id: EnvironmentId,
    selection: &Selection,
) -> Result<()> {
    let target = resolve(ctx, environment_id, selection).await?;
    let mut tx = ctx.db.begin().await?;
    let found = selected(&mut *tx, environment_id, &target, selection, true).await?;
    let ids: Vec<Uuid> = found.iter().map(|s| s.id).collect();
    schedules::pause(&mut *tx, &ids).await?;
    let cancelled = tasks::cancel_for_schedules(&mut *tx, &ids, "the sync was paused").await?;
    tx.commit().await?;
    tracing::info!(
        schedules = ids.len(),
        cancelled = cancelled.len(),
        "syncs paused"
    );
    Ok(())
}

/// Starts the selected schedules that are paused, with their next run due now.
pub async fn start(
    ctx: &Context,
    environment_id: EnvironmentId,
    selection: &Selection,
) -> Result<()> {
    let target = resolve(ctx, environment_id, selection).await?;
    let found = selected(&ctx.db, environment_id, &target, selection, false).await?;
    let ids: Vec<Uuid> = found.iter().map(|s| s.id).collect();
    schedules::start(&ctx.db, &ids).await?;
    Ok(())
}

/// Sets (`Some("every 5 minutes")`) or removes (`None`) a connection's frequency override of a
/// sync; at least every 30 seconds. Returns the frequency now in effect.
pub async fn update_frequency(
    ctx: &Context,
    environment_id: EnvironmentId,
    selection: &Selection,
    frequency: Option<&str>,
) -> Result<String> {
    let secs = frequency
        .map(|f| {
            parse_frequency(f)
                .map_err(|e| Error::invalid("frequency", e))
                .and_then(|secs| {
                    i64::try_from(secs).map_err(|_| Error::invalid("frequency", "is too long"))
                })
        })
        .transpose()?;
    let target = resolve(ctx, environment_id, selection).await?;
    let found = selected(&ctx.db, environment_id, &target, selection, false).await?;
    let [schedule] = found.as_slice() else {
        return Err(none_found(selection));
    };
    let override_ = frequency.zip(secs);
    schedules::set_frequency_override(&ctx.db, schedule.id, override_)
        .await?
        .ok_or_else(|| none_found(selection))
}

/// Nango's `ReportedSyncJobStatus`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SyncStatus {
    pub id: Uuid,
    /// `INITIAL` (no earlier run to continue from), `INCREMENTAL`, or `FULL` (a full refresh of
    /// an incremental sync), of the latest run.
    #[serde(rename = "type")]
    pub run_type: &'static str,
    pub name: String,
    pub variant: &'static str,
    pub connection_id: String,
    /// RUNNING, PAUSED, STOPPED, SUCCESS or ERROR.
    pub status: &'static str,
    /// Counts of the last successful run, per model.
    #[serde(rename = "latestResult", skip_serializing_if = "Option::is_none")]
    pub latest_result: Option<BTreeMap<String, ModelResult>>,
    pub frequency: String,
    #[serde(rename = "finishedAt", skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
    /// `None` unless the schedule is started.
    #[serde(rename = "nextScheduledSyncAt")]
    pub next_scheduled_sync_at: Option<DateTime<Utc>>,
    #[serde(
        rename = "latestExecutionStatus",
        skip_serializing_if = "Option::is_none"
    )]
    pub latest_execution_status: Option<&'static str>,
    /// Live records per model of the sync.
    #[serde(rename = "recordCount")]
    pub record_count: BTreeMap<String, i64>,
    pub checkpoint: Option<Value>,
}

fn is_active(state: TaskState) -> bool {
    matches!(
        state,
        TaskState::Created | TaskState::Dispatched | TaskState::Started
    )
}

/// A run's outcome in Nango's words.
fn execution_status(state: TaskState) -> &'static str {
    match state {
        TaskState::Created | TaskState::Dispatched | TaskState::Started => "RUNNING",
        TaskState::Succeeded => "SUCCESS",
        TaskState::Failed | TaskState::Expired => "ERROR",
        TaskState::Cancelled => "STOPPED",
    }
}

/// As Nango classifies it: a run going on wins, then the schedule's state, then the outcome of
/// the latest run (no run yet counts as success).
fn classify(schedule: ScheduleState, latest: Option<TaskState>) -> &'static str {
    match (latest, schedule) {
        (Some(state), _) if is_active(state) => "RUNNING",
        (_, ScheduleState::Paused) => "PAUSED",
        (_, ScheduleState::Deleted) => "STOPPED",
        (None | Some(TaskState::Succeeded), ScheduleState::Started) => "SUCCESS",
        (Some(_), ScheduleState::Started) => "ERROR",
    }
}

fn run_type(payload: Option<&Payload>, sync_type: Option<SyncType>) -> &'static str {
    match payload.and_then(Payload::function) {
        Some(p) if p.full && sync_type == Some(SyncType::Incremental) => "FULL",
        Some(p) if p.last_sync_date.is_some() => "INCREMENTAL",
        _ => "INITIAL",
    }
}

fn results(output: Option<&Value>) -> Option<BTreeMap<String, ModelResult>> {
    output
        .and_then(|o| o.get("results"))
        .and_then(|r| serde_json::from_value(r.clone()).ok())
}

/// The status of the selected syncs of one connection or of every connection of the
/// integration (`GET /sync/status`); unknown names are an error, an empty list means all.
pub async fn status(
    ctx: &Context,
    environment_id: EnvironmentId,
    selection: &Selection,
) -> Result<Vec<SyncStatus>> {
    let target = resolve(ctx, environment_id, selection).await?;
    let found = schedules::find(&ctx.db, &target.selected(environment_id), false).await?;
    let ids: Vec<Uuid> = found.iter().map(|s| s.id).collect();
    let history: BTreeMap<Uuid, schedules::RunHistory> = schedules::run_history(&ctx.db, &ids)
        .await?
        .into_iter()
        .map(|h| (h.schedule_id, h))
        .collect();
    let mut connections: Vec<ConnectionRowId> = found.iter().map(|s| s.connection).collect();
    connections.dedup();
    let models: Vec<String> = target
        .syncs
        .values()
        .flat_map(|f| f.config.output.iter().cloned())
        .collect();
    let counts: BTreeMap<(ConnectionRowId, String), i64> =
        records::count_by_model(&ctx.db, &connections, &models)
            .await?
            .into_iter()
            .map(|(connection, model, n)| ((connection, model), n))
            .collect();
    Ok(found
        .into_iter()
        .map(|s| {
            let function = &target.syncs[&s.function_name];
            let history = history.get(&s.id);
            let latest = history.and_then(|h| h.latest_state);
            let record_count = function
                .config
                .output
                .iter()
                .map(|m| {
                    let n = counts.get(&(s.connection, m.clone())).copied();
                    (m.clone(), n.unwrap_or(0))
                })
                .collect();
            SyncStatus {
                id: s.id,
                run_type: run_type(
                    history.and_then(|h| h.latest_payload.as_ref()),
                    function.config.sync().map(|c| c.sync_type),
                ),
                name: s.function_name.clone(),
                variant: DEFAULT_VARIANT,
                connection_id: s.connection_id.clone(),
                status: classify(s.state, latest),
                latest_result: results(history.and_then(|h| h.last_success_output.as_ref())),
                frequency: s.frequency.clone(),
                finished_at: history.and_then(|h| h.finished_at),
                next_scheduled_sync_at: (s.state == ScheduleState::Started)
                    .then_some(s.next_execution_at),
                latest_execution_status: latest.map(execution_status),
                record_count,
                checkpoint: history.and_then(|h| h.checkpoint.clone()),
            }
        })
        .collect())
}

/// Nango's sync webhook for one model a successful run changed (`NangoSyncWebhookBodySuccess`).
/// `modifiedAfter` is when the run started: the records it changed are those modified since.
/// The fields every sync webhook has, success or failure.
fn sync_webhook(payload: &FunctionPayload, model: &str, success: bool) -> Value {
    json!({
        "from": webhooks::FROM,
        "type": "sync",
        "connectionId": payload.connection_id,
        "providerConfigKey": payload.integration,
        "syncName": payload.function,
        "syncVariant": DEFAULT_VARIANT,
        "model": model,
        "syncType": if payload.last_sync_date.is_none() { "INITIAL" } else { "INCREMENTAL" },
        "success": success,
    })
}

fn result_webhook(
    payload: &FunctionPayload,
    started_at: DateTime<Utc>,
    model: &str,
    counts: &ModelResult,
) -> Value {
    let modified_after = started_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let mut body = sync_webhook(payload, model, true);
    body["modifiedAfter"] = json!(modified_after);
    body["responseResults"] = json!(counts);
    // Deprecated in Nango, kept for older receivers: null for a first run.
    body["queryTimeStamp"] = if payload.last_sync_date.is_none() {
        Value::Null
    } else {
        Value::String(modified_after)
    };
    body
}

/// Sends the environment's webhook for each model a successful sync run changed; a model
/// without changes sends none, as in Nango. Failures to queue are logged, not returned: the
/// run is recorded by then, and the outbox retries deliveries that fail.
pub async fn run_succeeded(ctx: &Context, task: &Task, output: &Value) {
    let (Some(payload), Some(started_at)) = (task.payload.function(), task.started_at) else {
        return;
    };
    for (model, counts) in results(Some(output)).unwrap_or_default() {
        if counts.added + counts.updated + counts.deleted == 0 {
            continue;
        }
        let body = result_webhook(payload, started_at, &model, &counts);
        if let Err(e) = webhooks::emit(ctx, task.environment_id, None, &body).await {
            tracing::error!(task = %task.id, %model, error = %e, "could not queue the sync webhook");
        }
    }
}

/// Sends the environment's webhook for a sync run that failed (Nango's `success: false` shape,
/// one per model of the sync), so a receiver learns of errors without polling the status.
pub async fn run_failed(ctx: &Context, task: &Task, error: &Value) {
    let Some(payload) = task.payload.function() else {
        return;
    };
    let models = match store::get_active(
        &ctx.db,
        task.environment_id,
        &payload.integration,
        FunctionType::Sync,
        &payload.function,
    )
    .await
    {
        Ok(function) => function.config.output,
        Err(e) => {
            tracing::error!(task = %task.id, error = %e, "could not read the failed sync's models");
            return;
        }
    };
    let started_at = task
        .started_at
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
    let failed_at = Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    for model in models {
        let mut body = sync_webhook(payload, &model, false);
        body["error"] = json!({
            "type": error.get("kind").and_then(Value::as_str).unwrap_or("script_error"),
            "description": error.get("message").and_then(Value::as_str).unwrap_or_default(),
        });
        body["startedAt"] = json!(started_at);
        body["failedAt"] = json!(failed_at);
        if let Err(e) = webhooks::emit(ctx, task.environment_id, None, &body).await {
            tracing::error!(task = %task.id, %model, error = %e, "could not queue the sync failure webhook");
        }
    }
}

/// Gives a stored connection (row id) the schedules of its integration's syncs. A failure is
/// logged, not returned: the connection is stored by then, and the scheduler's reconcile
/// catches up on its next tick.
pub async fn connection_stored(ctx: &Context, connection: ConnectionRowId) {
    if let Err(e) = schedules::reconcile(&ctx.db, ReconcileScope::connection(connection)).await {
        tracing::error!(%connection, error = %e, "could not create the connection's sync schedules");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_is_classified_as_nango_does() {
        use ScheduleState::*;
        assert_eq!(classify(Started, Some(TaskState::Started)), "RUNNING");
        assert_eq!(classify(Paused, Some(TaskState::Dispatched)), "RUNNING");
        assert_eq!(classify(Paused, Some(TaskState::Succeeded)), "PAUSED");
        assert_eq!(classify(Deleted, None), "STOPPED");
        assert_eq!(classify(Started, None), "SUCCESS");
        assert_eq!(classify(Started, Some(TaskState::Succeeded)), "SUCCESS");
        assert_eq!(classify(Started, Some(TaskState::Expired)), "ERROR");
        assert_eq!(classify(Started, Some(TaskState::Cancelled)), "ERROR");
    }

    #[test]
    fn sync_identifiers_accept_the_base_variant_only() {
        let parse = |v: Value| {
            serde_json::from_value::<SyncIdentifier>(v)
                .unwrap()
                .into_name()
        };
        assert_eq!(parse(json!("contacts")).unwrap(), "contacts");
        assert_eq!(parse(json!("contacts::base")).unwrap(), "contacts");
        assert_eq!(
            parse(json!({"name": "contacts", "variant": "base"})).unwrap(),
            "contacts"
        );
        assert!(matches!(
            parse(json!("contacts::eu")),
            Err(Error::NotFound {
                code: ErrorCode::UnknownSync,
                ..
            })
        ));
    }

    #[test]
    fn sync_mode_follows_nangos_precedence() {
        use SyncMode::*;
        let m =
            |mode, reset, empty, full| SyncMode::from_request(mode, reset, empty, full).unwrap();
        assert_eq!(m(None, false, false, false), Incremental);
        assert_eq!(m(None, false, false, true), FullRefresh);
        assert_eq!(m(None, true, false, false), FullRefresh);
        assert_eq!(m(None, true, true, false), FullRefreshAndClearCache);
        assert_eq!(m(Some("incremental"), true, true, true), Incremental);
        assert_eq!(
            m(Some("full_refresh_and_clear_cache"), false, false, false),
            FullRefreshAndClearCache
        );
        assert!(SyncMode::from_request(Some("everything"), false, false, false).is_err());
    }

    #[test]
    fn run_types() {
        let p = |v: Value| Some(serde_json::from_value::<Payload>(v).unwrap());
        assert_eq!(run_type(None, Some(SyncType::Full)), "INITIAL");
        let full = json!({"integration": "h", "connection_id": "c", "function": "f", "full": true});
        assert_eq!(
            run_type(p(full.clone()).as_ref(), Some(SyncType::Incremental)),
            "FULL"
        );
        assert_eq!(run_type(p(full).as_ref(), Some(SyncType::Full)), "INITIAL");
        let next = json!({"integration": "h", "connection_id": "c", "function": "f",
                          "full": true, "last_sync_date": "2026-11-26T09:00:00Z"});
        assert_eq!(
            run_type(p(next).as_ref(), Some(SyncType::Full)),
            "INCREMENTAL"
        );
    }
}
