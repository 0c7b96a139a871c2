//! Actions, run on demand for one connection: `POST /action/trigger` and `GET /action/:id`.
//!
//! A trigger inserts an action task, hands it to the runners at once through the dispatcher's
//! fast path, and (unless the caller asked for `X-Async`) waits for it through
//! [`Completions`](crate::queue::completions::Completions): woken by the task's completion
//! notification, or re-reading with backoff in poll mode. A call still running when
//! `LASSO_ACTION_WAIT_SECS` is up (API Gateway ends requests at 30 s) becomes an async one: the
//! caller gets the id and status URL, and the `async_action` webhook when it finishes.
//!
//! Retries (`X-Max-Retries`) are new tasks chained by `retry_of`; the id a caller holds is the
//! first attempt's, and it always answers for the latest attempt.

use crate::EnvironmentId;
use serde::Serialize;
use serde_json::{Map, Value, json};
use tokio::time::Instant;
use uuid::Uuid;

use crate::context::Context;
use crate::queue::completions::Check;
use crate::queue::{FunctionPayload, Payload};
use crate::queue::{NewTask, Task, TaskKind, TaskState, tasks};
use crate::scripts::{self, FunctionType};
use crate::{Error, ErrorCode, Result, connections, dispatcher, webhooks};

/// The most retries a caller may ask for (Nango's limit).
pub const MAX_RETRIES: u32 = 5;

/// One `POST /action/trigger`.
#[derive(Debug, Clone)]
pub struct Trigger {
    /// The integration's unique key.
    pub integration: String,
    pub connection_id: String,
    pub action: String,
    pub input: Value,
    /// Extra attempts after a failure, at most [`MAX_RETRIES`].
    pub max_retries: u32,
    /// Answer at once with the id and status URL (`X-Async: true`).
    pub run_async: bool,
}

/// An action that has not finished: Nango's `AsyncActionResponse`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Pending {
    pub id: Uuid,
    /// A path: Nango's client prefixes it with its host.
    #[serde(rename = "statusUrl")]
    pub status_url: String,
}

impl Pending {
    fn of(id: Uuid) -> Self {
        Self {
            id,
            status_url: format!("/action/{id}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The action's output.
    Done(Value),
    Pending(Pending),
}

/// Runs the action: at once and waits for its output, or returns [`Outcome::Pending`] for an
/// async call or one that outlasted `LASSO_ACTION_WAIT_SECS`. A failed action is an
/// [`Error::ActionError`] or [`Error::ScriptFailed`].
pub async fn trigger(
    ctx: &Context,
    environment_id: EnvironmentId,
    trigger: Trigger,
) -> Result<Outcome> {
    let deadline = Instant::now() + ctx.config.action_wait_timeout;
    let (run_async, retries) = (trigger.run_async, trigger.max_retries > 0);
    let id = start(ctx, environment_id, trigger).await?;
    if run_async {
        return Ok(Outcome::Pending(Pending::of(id)));
    }
    match wait(ctx, environment_id, id, retries, deadline).await? {
        Some(task) => outcome(task),
        None => go_async(ctx, environment_id, id).await,
    }
}

/// A script's `nango.triggerAction`: runs the action and waits for its output until `deadline`
/// (the calling script's own), past which it is an error (the action goes on and its
/// outcome stays readable at `GET /action/:id`).
pub async fn run_for_script(
    ctx: &Context,
    environment_id: EnvironmentId,
    trigger: Trigger,
    deadline: Instant,
) -> Result<Value> {
    let (action, retries) = (trigger.action.clone(), trigger.max_retries > 0);
    let id = start(ctx, environment_id, trigger).await?;
    match wait(ctx, environment_id, id, retries, deadline).await? {
        Some(task) => match outcome(task)? {
            Outcome::Done(output) => Ok(output),
            Outcome::Pending(_) => unreachable!("a finished task has an outcome"),
        },
        None => Err(Error::ScriptFailed {
            code: ErrorCode::ActionTimeout,
            message: format!(
                "action `{action}` ({id}) did not finish before the calling script's deadline"
            ),
            payload: json!({ "kind": "timeout", "id": id }),
        }),
    }
}

/// Checks the action and connection exist and queues the action's task, sent to the runners
/// at once. Returns its id.
async fn start(ctx: &Context, environment_id: EnvironmentId, trigger: Trigger) -> Result<Uuid> {
    if trigger.max_retries > MAX_RETRIES {
        return Err(Error::invalid(
            "X-Max-Retries",
            format!("expected a whole number from 0 to {MAX_RETRIES}"),
        ));
    }
    // Both must exist; asked at once, reported in this order.
    let (function, connection) = tokio::join!(
        scripts::store::get_active(
            &ctx.db,
            environment_id,
            &trigger.integration,
            FunctionType::Action,
            &trigger.action,
        ),
        connections::row_id(
            &ctx.db,
            environment_id,
            &trigger.integration,
            &trigger.connection_id,
        )
    );
    function?;
    connection?;
    let payload = Payload::Function(FunctionPayload {
        integration: trigger.integration,
        connection_id: trigger.connection_id,
        function: trigger.action.clone(),
        input: Some(trigger.input),
        full: false,
        last_sync_date: None,
        async_caller: trigger.run_async,
    });
    let mut task = NewTask::new(environment_id, TaskKind::Action, trigger.action, payload);
    task.max_attempts = trigger.max_retries as i32 + 1;
    dispatcher::enqueue_now(ctx, &task).await
}

/// Waits until action `id` (its latest attempt) finishes, or `deadline`: `None` then.
async fn wait(
    ctx: &Context,
    environment_id: EnvironmentId,
    id: Uuid,
    retries: bool,
    deadline: Instant,
) -> Result<Option<Task>> {
    ctx.completions
        .wait(id, deadline, || async {
            // Without retries there is no chain to follow: the task is its own latest attempt.
            let task = if retries {
                latest(ctx, environment_id, id).await?
            } else {
                tasks::get(&ctx.db, id)
                    .await?
                    .ok_or_else(|| Error::not_found(format!("action `{id}`")))?
            };
            Ok(match task {
                task if task.state.is_terminal() => Check::Ready(task),
                task => {
                    // A retry the runner just queued: the api, not the runner, sends tasks
                    // (runners have no right to their queue), so it goes out now rather than
                    // at the dispatcher's next round.
                    if task.attempt > 1 && task.state == TaskState::Created {
                        dispatcher::dispatch_now(ctx).await;
                    }
                    Check::Watch(task.id)
                }
            })
        })
        .await
}

/// The state of action `id` of the environment (`GET /action/:id`): its output, pending, or
/// its failure as an error. `not_found` for an id the environment has no action for.
pub async fn result(ctx: &Context, environment_id: EnvironmentId, id: Uuid) -> Result<Outcome> {
    let task = latest(ctx, environment_id, id).await?;
    if task.state.is_terminal() {
        outcome(task)
    } else {
        Ok(Outcome::Pending(Pending::of(id)))
    }
}

async fn latest(ctx: &Context, environment_id: EnvironmentId, id: Uuid) -> Result<Task> {
    tasks::latest_attempt(&ctx.db, environment_id, id)
        .await?
        .filter(|t| t.kind == TaskKind::Action)
        .ok_or_else(|| Error::not_found(format!("action `{id}`")))
}

/// The wait ran out: the caller gets the id instead, and the webhook when the action finishes.
/// The flag is set on the latest attempt only while it is unfinished, so an action that
/// finished meanwhile is answered with its result instead.
async fn go_async(ctx: &Context, environment_id: EnvironmentId, id: Uuid) -> Result<Outcome> {
    loop {
        let task = latest(ctx, environment_id, id).await?;
        if task.state.is_terminal() {
            return outcome(task);
        }
        if tasks::flag_async_caller(&ctx.db, task.id).await? {
            return Ok(Outcome::Pending(Pending::of(id)));
        }
    }
}

fn outcome(task: Task) -> Result<Outcome> {
    match task.state {
        TaskState::Succeeded => Ok(Outcome::Done(task.output.unwrap_or(Value::Null))),
        _ => Err(failure(&task)),
    }
}

/// The caller's error for a finished, unsuccessful attempt. Nango hands an `ActionError`'s
/// payload back as an object: anything else is wrapped as `{message}`.
fn failure(task: &Task) -> Error {
    let error = task.error.clone().unwrap_or(Value::Null);
    let kind = error["kind"].as_str().unwrap_or("unknown").to_string();
    let message = error["message"].as_str().unwrap_or_default().to_string();
    match (task.state, kind.as_str()) {
        (TaskState::Failed, "action_error") => Error::ActionError {
            payload: match error.get("payload") {
                Some(Value::Object(payload)) => Value::Object(payload.clone()),
                None | Some(Value::Null) => Value::Object(Map::new()),
                Some(other) => json!({ "message": other }),
            },
        },
        (TaskState::Failed, "output_too_large") => Error::ScriptFailed {
            code: ErrorCode::ActionOutputTooLarge,
            message,
            payload: json!({ "kind": kind }),
        },
        (TaskState::Expired, _) => Error::ScriptFailed {
            code: ErrorCode::ActionExpired,
            message: format!("the action did not finish: {message}"),
            payload: json!({ "kind": "expired", "message": message }),
        },
        (TaskState::Cancelled, _) => Error::ScriptFailed {
            code: ErrorCode::ActionCancelled,
            message: "the action was cancelled".into(),
            payload: json!({ "kind": "cancelled" }),
        },
        _ => Error::ScriptFailed {
            code: ErrorCode::ActionScriptFailure,
            message: format!("the action's script failed ({kind}): {message}"),
            payload: json!({ "kind": kind, "message": message }),
        },
    }
}

/// For the runner, once it recorded an action's success (`payload` as the task finished with
/// it): an async caller gets its webhook.
pub async fn succeeded(ctx: &Context, task: &Task, payload: &Payload) {
    notify_async_caller(ctx, task, payload).await;
}

/// For the runner: records an action's failure and, when its budget allows, its next attempt,
/// which a waiting caller dispatches at once (see [`trigger`]) and the dispatcher otherwise.
/// The last failure tells an async caller.
pub async fn fail(ctx: &Context, task: &Task, error: &Value) -> Result<()> {
    match tasks::fail_with_retry(&ctx.db, task.id, error).await? {
        (_, Some(retry)) => {
            tracing::info!(task_id = %task.id, retry_id = %retry, attempt = task.attempt, "action failed; retrying");
        }
        (Some(payload), None) => notify_async_caller(ctx, task, &payload).await,
        (None, None) => {}
    }
    Ok(())
}

/// Sends Nango's `async_action` webhook when the finished task's caller is not waiting on the
/// HTTP answer. `payload` is the one the finishing statement returned: the flag [`go_async`]
/// sets only on unfinished tasks, so it is there exactly when the caller stopped waiting. A
/// failure to queue the webhook is logged: the task's outcome is recorded by then.
async fn notify_async_caller(ctx: &Context, task: &Task, payload: &Payload) {
    let Some(payload) = payload.function().filter(|p| p.async_caller) else {
        return;
    };
    if let Err(e) = try_notify_async_caller(ctx, task, payload).await {
        tracing::error!(task_id = %task.id, error = %e, "could not queue the async_action webhook");
    }
}

async fn try_notify_async_caller(
    ctx: &Context,
    task: &Task,
    payload: &FunctionPayload,
) -> Result<()> {
    let first = tasks::first_attempt(&ctx.db, task.id).await?;
    webhooks::emit(
        ctx,
        task.environment_id,
        None,
        &async_action_body(payload, &Pending::of(first)),
    )
    .await?;
    Ok(())
}

/// Nango's `NangoAsyncActionWebhookBody`.
fn async_action_body(payload: &FunctionPayload, pending: &Pending) -> Value {
    json!({
        "from": webhooks::FROM,
        "type": "async_action",
        "connectionId": payload.connection_id,
        "providerConfigKey": payload.integration,
        "payload": pending,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(state: TaskState, error: Value) -> Task {
        Task {
            id: Uuid::nil(),
            environment_id: EnvironmentId(1),
            kind: TaskKind::Action,
            group_key: "env:1".into(),
            name: "a".into(),
            payload: Payload::script("a.js", Value::Null),
            state,
            attempt: 1,
            max_attempts: 1,
            schedule_id: None,
            created_at: chrono::Utc::now(),
            started_at: None,
            completed_at: None,
            output: None,
            error: Some(error),
            heartbeat_timeout_secs: 120,
        }
    }

    #[test]
    fn action_error_payloads_are_objects_as_in_nango() {
        let cases = [
            (json!({"code": "x"}), json!({"code": "x"})),
            (json!("plain"), json!({"message": "plain"})),
            (json!([1, 2]), json!({"message": [1, 2]})),
            (Value::Null, json!({})),
        ];
        for (thrown, expected) in cases {
            let error = json!({"kind": "action_error", "message": "", "payload": thrown});
            match failure(&task(TaskState::Failed, error)) {
                Error::ActionError { payload } => assert_eq!(payload, expected),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn other_failures_name_what_happened_without_stacks() {
        let error = json!({"kind": "exception", "message": "boom", "stack": "at x (a.ts:1)"});
        match failure(&task(TaskState::Failed, error)) {
            Error::ScriptFailed {
                code,
                message,
                payload,
            } => {
                assert_eq!(code, ErrorCode::ActionScriptFailure);
                assert!(message.contains("boom"), "{message}");
                assert_eq!(payload, json!({"kind": "exception", "message": "boom"}));
            }
            other => panic!("{other:?}"),
        }
        let expired =
            json!({"kind": "expired", "message": "the runner stopped sending heartbeats"});
        assert!(matches!(
            failure(&task(TaskState::Expired, expired)),
            Error::ScriptFailed {
                code: ErrorCode::ActionExpired,
                ..
            }
        ));
    }

    #[test]
    fn async_webhook_has_nangos_shape() {
        let payload: FunctionPayload = serde_json::from_value(
            json!({"integration": "gh", "connection_id": "c1", "function": "f"}),
        )
        .unwrap();
        let id = Uuid::nil();
        assert_eq!(
            async_action_body(&payload, &Pending::of(id)),
            json!({"from": "nango", "type": "async_action", "connectionId": "c1",
                   "providerConfigKey": "gh",
                   "payload": {"id": id, "statusUrl": format!("/action/{id}")}})
        );
    }
}
