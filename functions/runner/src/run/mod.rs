//! Runs one task delivered by the task transport: claim it (a duplicate delivery does nothing),
//! load what it runs, run it in the sandbox while heartbeating, and record the outcome.

mod host;
mod oplog;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub use host::TaskHost;

use lasso_sandbox::{self as sandbox, Limits, RunBudget, RunInfo, ScriptError};
use lasso_services::Context;
use lasso_services::connections;
use lasso_services::queue::{FunctionPayload, Payload, Task, TaskKind, TaskMessage, tasks};
use lasso_services::records::{self, Scope};
use lasso_services::scripts::{self, Bundle, FunctionType, SyncType};
use lasso_services::{Error, Result};

/// What happened to one delivered message. `Err` from [`process_message`] means the message
/// could not be processed and should be delivered again.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Succeeded(Uuid),
    Failed(Uuid),
    /// The task was already started or finished elsewhere (a duplicate delivery).
    Skipped(Uuid),
    /// The task's environment is not in this runner's group (or the task does not exist): it
    /// was not run, and the message is reported as failed so it ends in the dead-letter queue.
    Refused(Uuid),
}

/// Largest action output returned to a caller.
pub const MAX_ACTION_OUTPUT: usize = 2 * 1024 * 1024;

pub async fn process_message(ctx: &Context, body: &str) -> Result<Outcome> {
    let task_id = parse_message(body)?;
    match tasks::start(&ctx.db, task_id, &ctx.config.runner_group).await? {
        Some(task) => run_started(ctx, task).await,
        None => not_started(ctx, task_id).await,
    }
}

/// The task a message names.
pub fn parse_message(body: &str) -> Result<Uuid> {
    let message: TaskMessage = serde_json::from_str(body)
        .map_err(|e| Error::invalid("message", format!("not a task message: {e}")))?;
    Ok(message.task_id)
}

/// Starts the tasks of a batch of messages in one statement ([`tasks::start_many`]): the
/// started ones by id. Each is then run with [`run_started`]; a message whose task is not
/// among them goes to [`not_started`].
pub async fn start_batch(ctx: &Context, ids: &[Uuid]) -> Result<HashMap<Uuid, Task>> {
    Ok(tasks::start_many(&ctx.db, ids, &ctx.config.runner_group)
        .await?
        .into_iter()
        .map(|t| (t.id, t))
        .collect())
}

/// A message whose task could not be started: a duplicate delivery of a task of this group,
/// or a task of another group (or none), which is refused.
pub async fn not_started(ctx: &Context, task_id: Uuid) -> Result<Outcome> {
    let own_group = &ctx.config.runner_group;
    match tasks::runner_group_of(&ctx.db, task_id).await? {
        Some(group) if group == *own_group => Ok(Outcome::Skipped(task_id)),
        group => {
            tracing::error!(
                %task_id,
                runner_group = %own_group,
                task_runner_group = group.as_deref().unwrap_or("(not visible)"),
                "refused a task of another runner group; nothing ran"
            );
            Ok(Outcome::Refused(task_id))
        }
    }
}

/// Runs a task this runner has started and records its outcome.
pub async fn run_started(ctx: &Context, task: Task) -> Result<Outcome> {
    let span = tracing::info_span!("task", task_id = %task.id, kind = task.kind.as_str(), attempt = task.attempt);
    let cancel = CancellationToken::new();
    // Beats until the outcome is recorded. Aborted when this future ends or is dropped: a
    // runner that dies stops heartbeating, so its task expires and is retried.
    let heartbeat = Heartbeat::start(ctx, &task, cancel.clone());
    let ran = tracing::Instrument::instrument(run_task(ctx, &task, cancel.clone()), span).await;
    let dropped = oplog::record(ctx, &task, &ran).await;
    let secrets = ran.host.as_ref().map(|h| h.secrets()).unwrap_or_default();
    let result = match ran.result {
        // A script that throws with a credential in its message must not hand it to the caller.
        Err(TaskError::Failed(mut error)) => {
            lasso_services::logs::redact_value(&mut error, &secrets);
            Err(error)
        }
        // A sync reports log entries its run could not store.
        Ok(mut output) if dropped > 0 && output.is_object() && task.kind != TaskKind::Action => {
            output["logs_dropped"] = json!(dropped);
            Ok(output)
        }
        Ok(output) => Ok(output),
        Err(TaskError::Retry(e)) => {
            // Our infrastructure failed before the script ran: give the task back so the
            // redelivered message can run it.
            tasks::release_start(&ctx.db, task.id).await?;
            return Err(e);
        }
    };
    // The script ran: a write of its outcome that fails is tried again while the task is still
    // ours. Given up, the task would expire and run again (an action twice).
    let mut pause = OUTCOME_RETRY_FIRST;
    loop {
        match record_outcome(ctx, &task, &result).await {
            Ok(outcome) => return Ok(outcome),
            Err(e) if e.is_transient() && heartbeat.still_ours() => {
                tracing::warn!(task_id = %task.id, error = %e, "recording the task's outcome failed; trying again");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(OUTCOME_RETRY_MAX);
            }
            Err(e) => return Err(e),
        }
    }
}

const OUTCOME_RETRY_FIRST: Duration = Duration::from_millis(100);
const OUTCOME_RETRY_MAX: Duration = Duration::from_secs(5);

/// Writes the outcome of a run (each write is one conditional statement, so writing again
/// after a failure is safe) and announces it.
async fn record_outcome(
    ctx: &Context,
    task: &Task,
    result: &Result<Value, Value>,
) -> Result<Outcome> {
    match result {
        Ok(output) => {
            // A run cancelled or expired meanwhile is not a result to announce.
            if let Some(payload) = tasks::succeed(&ctx.db, task.id, output).await? {
                match task.kind {
                    TaskKind::Action => {
                        lasso_services::actions::succeeded(ctx, task, &payload).await
                    }
                    TaskKind::Sync => lasso_services::syncs::run_succeeded(ctx, task, output).await,
                    _ => {}
                }
            }
            Ok(Outcome::Succeeded(task.id))
        }
        Err(error) => {
            // Actions retry at once within their budget (someone may be waiting on them).
            if task.kind == TaskKind::Action {
                lasso_services::actions::fail(ctx, task, error).await?;
            } else if tasks::fail(&ctx.db, task.id, error).await? && task.kind == TaskKind::Sync {
                lasso_services::syncs::run_failed(ctx, task, error).await;
            }
            Ok(Outcome::Failed(task.id))
        }
    }
}

/// A running task's heartbeat: it keeps the task's `last_heartbeat_at` fresh until dropped and,
/// when the queue says the task is no longer running (cancelled or expired), stops the script.
struct Heartbeat {
    beating: tokio::task::JoinHandle<()>,
    cancel: CancellationToken,
    /// When a heartbeat last went through.
    last: Arc<std::sync::Mutex<Instant>>,
    timeout: Duration,
}

impl Heartbeat {
    fn start(ctx: &Context, task: &Task, cancel: CancellationToken) -> Self {
        let last = Arc::new(std::sync::Mutex::new(Instant::now()));
        let beating = tokio::spawn(beat(ctx.clone(), task.id, cancel.clone(), last.clone()));
        Self {
            beating,
            cancel,
            last,
            timeout: Duration::from_secs(task.heartbeat_timeout_secs.max(0) as u64),
        }
    }

    /// Whether the task is still this runner's: the queue has not said otherwise, and a
    /// heartbeat went through recently enough that the scheduler has not expired it.
    fn still_ours(&self) -> bool {
        !self.cancel.is_cancelled()
            && self.last.lock().expect("heartbeat lock").elapsed() < self.timeout
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.beating.abort();
    }
}

async fn beat(
    ctx: Context,
    task: Uuid,
    cancel: CancellationToken,
    last: Arc<std::sync::Mutex<Instant>>,
) {
    loop {
        tokio::time::sleep(ctx.config.heartbeat_interval).await;
        match tasks::heartbeat(&ctx.db, task).await {
            Ok(true) => *last.lock().expect("heartbeat lock") = Instant::now(),
            Ok(false) => {
                cancel.cancel();
                return;
            }
            Err(e) => tracing::warn!(%task, error = %e, "heartbeat failed"),
        }
    }
}

/// What running a task gave: the outcome, and the host the script used (absent when the run
/// failed before the script started).
struct Ran {
    result: Result<Value, TaskError>,
    host: Option<Arc<TaskHost>>,
}

impl Ran {
    fn before_start(result: Result<Value, TaskError>) -> Self {
        Self { result, host: None }
    }
}

enum TaskError {
    /// A task outcome: recorded as FAILED with this error.
    Failed(Value),
    /// Not the task's fault; the message should come again.
    Retry(Error),
}

fn failed(kind: &str, message: impl Into<String>) -> TaskError {
    TaskError::Failed(json!({"kind": kind, "message": message.into()}))
}

/// Errors before the script runs: missing things are task outcomes, infrastructure is retried.
fn setup_error(e: Error) -> TaskError {
    match e {
        e @ (Error::NotFound { .. } | Error::Invalid { .. }) => failed("setup", e.to_string()),
        e => TaskError::Retry(e),
    }
}

fn limits(ctx: &Context) -> Limits {
    let c = &ctx.config;
    Limits {
        memory_bytes: c.script_memory_limit_bytes,
        timeout: c.script_timeout,
        max_concurrent_calls: c.script_max_concurrent_calls,
        max_log_bytes: c.script_log_limit_bytes,
        max_response_bytes: c.script_response_limit_bytes,
    }
}

async fn run_task(ctx: &Context, task: &Task, cancel: CancellationToken) -> Ran {
    match (task.kind, task.payload.clone()) {
        (TaskKind::Script, Payload::Script { script_key, input }) => {
            let source = match ctx.scripts.get(&script_key).await {
                Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
                Err(e @ Error::NotFound { .. }) => {
                    return Ran::before_start(Err(failed("script_not_found", e.to_string())));
                }
                Err(e) => return Ran::before_start(Err(TaskError::Retry(e))),
            };
            let host = Arc::new(TaskHost::without_connection());
            let result = sandbox::run(
                &sandbox::single_module(&source),
                Some(input),
                RunInfo {
                    execution_id: Some(task.id.to_string()),
                    ..RunInfo::default()
                },
                host.clone(),
                limits(ctx),
                cancel,
            )
            .await
            .map_err(script_failure);
            Ran {
                result,
                host: Some(host),
            }
        }
        (kind, Payload::Function(p)) if kind != TaskKind::Script => {
            run_function(ctx, task, kind, p, cancel).await
        }
        (kind, _) => Ran::before_start(Err(failed(
            "invalid_payload",
            format!(
                "a {} task needs a {} payload",
                kind.as_str(),
                if kind == TaskKind::Script {
                    "script"
                } else {
                    "function"
                }
            ),
        ))),
    }
}

/// The id every attempt of the task's call or run shares (its first attempt's), which scripts
/// read as `nango.executionId` to make what they change at a provider idempotent.
async fn execution_id(ctx: &Context, task: &Task) -> Result<Uuid, TaskError> {
    if task.attempt <= 1 {
        return Ok(task.id);
    }
    tasks::first_attempt(&ctx.db, task.id)
        .await
        .map_err(TaskError::Retry)
}

fn script_failure(e: ScriptError) -> TaskError {
    TaskError::Failed(serde_json::to_value(&e).expect("script error serializes"))
}

fn function_type(kind: TaskKind) -> FunctionType {
    match kind {
        TaskKind::Action => FunctionType::Action,
        TaskKind::OnEvent => FunctionType::OnEvent,
        // Webhook tasks run the subscribed sync's script with the payload.
        TaskKind::Sync | TaskKind::Webhook | TaskKind::Script => FunctionType::Sync,
    }
}

async fn run_function(
    ctx: &Context,
    task: &Task,
    kind: TaskKind,
    p: FunctionPayload,
    cancel: CancellationToken,
) -> Ran {
    let loaded = match load(ctx, task, kind, &p).await {
        Ok(loaded) => loaded,
        Err(e) => return Ran::before_start(Err(e)),
    };
    let budget = RunBudget::new(limits(ctx));
    let host = Arc::new(TaskHost::new(
        ctx.clone(),
        task.id,
        loaded.connection.clone(),
        loaded.function.clone(),
        full_run(task, kind, &p, &loaded.function),
        budget.clone(),
    ));
    let result = execute(ctx, task, &p, cancel, &loaded, &host, budget).await;
    Ran {
        result,
        host: Some(host),
    }
}

/// What a function task runs with.
struct Loaded {
    connection: connections::Connection,
    function: scripts::store::DeployedFunction,
    bundle: Arc<Bundle>,
}

/// The connection, the active function and its bundle; missing ones fail the task.
async fn load(
    ctx: &Context,
    task: &Task,
    kind: TaskKind,
    p: &FunctionPayload,
) -> Result<Loaded, TaskError> {
    // Independent reads, asked at once.
    let (connection, function) = tokio::join!(
        connections::get(
            &ctx.db,
            &ctx.cipher,
            task.environment_id,
            &p.integration,
            &p.connection_id,
        ),
        scripts::store::get_active(
            &ctx.db,
            task.environment_id,
            &p.integration,
            function_type(kind),
            &p.function,
        )
    );
    let connection = connection.map_err(setup_error)?;
    let function = function.map_err(setup_error)?;
    let bundle = ctx
        .bundles
        .get(ctx.scripts.as_ref(), &function)
        .await
        .map_err(setup_error)?;
    Ok(Loaded {
        connection,
        function,
        bundle,
    })
}

/// A full run of a sync that tracks deletes records what it saw, to delete the rest after: its
/// run id is the task's.
fn full_run(
    task: &Task,
    kind: TaskKind,
    p: &FunctionPayload,
    function: &scripts::store::DeployedFunction,
) -> Option<Uuid> {
    match function.config.sync() {
        Some(s)
            if kind == TaskKind::Sync
                && s.track_deletes
                && (p.full || s.sync_type == SyncType::Full) =>
        {
            Some(task.id)
        }
        _ => None,
    }
}

async fn execute(
    ctx: &Context,
    task: &Task,
    p: &FunctionPayload,
    cancel: CancellationToken,
    loaded: &Loaded,
    host: &Arc<TaskHost>,
    budget: Arc<RunBudget>,
) -> Result<Value, TaskError> {
    let Loaded {
        connection,
        function,
        bundle,
    } = loaded;
    let kind = task.kind;
    let run = full_run(task, kind, p, function);
    let execution = execution_id(ctx, task).await?;
    let provider = ctx.providers.get(&connection.provider);
    let info = RunInfo {
        connection_id: Some(connection.connection_id.clone()),
        provider_config_key: Some(connection.provider_config_key.clone()),
        provider: Some(connection.provider.clone()),
        variant: None,
        last_sync_date: p.last_sync_date,
        paginate: provider
            .and_then(|pr| pr.proxy.as_ref())
            .and_then(|proxy| proxy.paginate.as_ref())
            .and_then(|pg| serde_json::to_value(pg).ok()),
        execution_id: Some(execution.to_string()),
    };
    let input = match kind {
        TaskKind::Action | TaskKind::Webhook => Some(p.input.clone().unwrap_or(Value::Null)),
        _ => None,
    };
    if let Some(run) = run {
        records::begin_run(&ctx.db, run, task.id)
            .await
            .map_err(TaskError::Retry)?;
    }
    let result = sandbox::run_with_budget(bundle, input, info, host.clone(), budget, cancel).await;
    let outcome = match result {
        Ok(output) if kind == TaskKind::Sync => {
            let mut results = host.results();
            let mut lost = false;
            if let Some(run) = run {
                for model in &function.config.output {
                    let scope = Scope::new(connection.id, model, None);
                    match records::delete_unseen(&ctx.db, &scope, run)
                        .await
                        .map_err(TaskError::Retry)?
                    {
                        Some(deleted) => {
                            results.entry(model.clone()).or_default().deleted += deleted
                        }
                        None => lost = true,
                    }
                }
            }
            let mut output = json!({"results": results, "returned": output});
            if lost {
                tracing::warn!(task = %task.id, "{}", host::SEEN_SET_LOST);
                output["deletions_skipped"] = json!(host::SEEN_SET_LOST);
            }
            Ok(output)
        }
        Ok(output) if kind == TaskKind::Action => {
            let size = output.to_string().len();
            if size > MAX_ACTION_OUTPUT {
                Err(failed(
                    "output_too_large",
                    format!(
                        "the action returned {size} bytes; an action may return at most {MAX_ACTION_OUTPUT} (2 MiB)"
                    ),
                ))
            } else {
                Ok(output)
            }
        }
        Ok(output) => Ok(json!({"results": host.results(), "returned": output})),
        Err(e) => Err(script_failure(e)),
    };
    host.release_locks().await;
    // Deletion windows the script opened stay open for its later executions; a full run's seen
    // set ends with it.
    if let Some(seen) = run
        && let Err(e) = records::forget_run(&ctx.db, seen).await
    {
        tracing::warn!(task = %task.id, error = %e, "could not clear the run's seen set");
    }
    outcome
}
