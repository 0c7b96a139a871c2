//! Runs one task delivered by the task transport: claim it, load its script, run it in the
//! sandbox, record the outcome.

use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

use crate::context::Context;
use crate::queue::{TaskMessage, tasks};
use crate::sandbox::{self, Limits};
use crate::{Error, Result};

/// What happened to one delivered message. `Err` from [`process_message`] means the message
/// could not be processed and should be delivered again.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Succeeded(Uuid),
    Failed(Uuid),
    /// The task was already started or finished elsewhere (a duplicate delivery).
    Skipped(Uuid),
}

/// The payload of a bare script task.
#[derive(Debug, Deserialize)]
struct ScriptPayload {
    script_key: String,
    #[serde(default)]
    input: Value,
}

pub async fn process_message(ctx: &Context, body: &str) -> Result<Outcome> {
    let message: TaskMessage = serde_json::from_str(body)
        .map_err(|e| Error::invalid("message", format!("not a task message: {e}")))?;
    let Some(task) = tasks::start(&ctx.db, message.task_id).await? else {
        return Ok(Outcome::Skipped(message.task_id));
    };
    let payload: ScriptPayload = match serde_json::from_value(task.payload.clone()) {
        Ok(p) => p,
        Err(e) => {
            let error = serde_json::json!({"kind": "invalid_payload", "message": e.to_string()});
            tasks::fail(&ctx.db, task.id, &error).await?;
            return Ok(Outcome::Failed(task.id));
        }
    };
    let source = match ctx.scripts.get(&payload.script_key).await {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e @ Error::NotFound { .. }) => {
            let error = serde_json::json!({"kind": "script_not_found", "message": e.to_string()});
            tasks::fail(&ctx.db, task.id, &error).await?;
            return Ok(Outcome::Failed(task.id));
        }
        Err(e) => {
            // The store is unreachable: give the task back so the redelivery can run it.
            tasks::release_start(&ctx.db, task.id).await?;
            return Err(e);
        }
    };
    let limits = Limits {
        memory_bytes: ctx.config.script_memory_limit_bytes,
        timeout: ctx.config.script_timeout,
    };
    match sandbox::run(&source, &payload.input, limits).await {
        Ok(output) => {
            tasks::succeed(&ctx.db, task.id, &output).await?;
            Ok(Outcome::Succeeded(task.id))
        }
        Err(script_error) => {
            let error = serde_json::to_value(&script_error).expect("script error serializes");
            tasks::fail(&ctx.db, task.id, &error).await?;
            Ok(Outcome::Failed(task.id))
        }
    }
}
