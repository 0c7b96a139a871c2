//! The operation log of a task: one operation with the script's log lines, its HTTP calls and
//! the records result, scrubbed of the connection's secrets and written before the task
//! completes (a Lambda flushes before it returns).

use serde_json::{Value, json};

use super::{Ran, TaskError};
use lasso_services::Context;
use lasso_services::logs::{Level, MessageKind, OperationKind, OperationLog, OperationState};
use lasso_services::queue::{Task, TaskKind};

fn kind(task: TaskKind) -> OperationKind {
    match task {
        TaskKind::Sync => OperationKind::Sync,
        TaskKind::Action => OperationKind::Action,
        TaskKind::Webhook => OperationKind::Webhook,
        TaskKind::OnEvent | TaskKind::Script => OperationKind::Task,
    }
}

/// Writes the task's operation; returns how many log entries the log store dropped. A task
/// given back for redelivery ran nothing and logs nothing.
pub(super) async fn record(ctx: &Context, task: &Task, ran: &Ran) -> usize {
    let (state, error) = match &ran.result {
        Ok(_) => (OperationState::Success, None),
        Err(TaskError::Retry(_)) => return 0,
        Err(TaskError::Failed(error)) => {
            let state = if error["kind"] == "cancelled" {
                OperationState::Cancelled
            } else {
                OperationState::Failed
            };
            (
                state,
                Some(error["message"].as_str().unwrap_or("failed").to_string()),
            )
        }
    };
    let function = task.payload.function();
    let name = function.map_or(task.name.as_str(), |p| p.function.as_str());
    let mut log = OperationLog::start(
        task.environment_id,
        kind(task.kind),
        function.map(|p| p.integration.as_str()),
        function.map(|p| p.connection_id.as_str()),
        Some(name),
    );
    log.set_meta("task_id", json!(task.id));
    log.set_meta("attempt", json!(task.attempt));
    if let Some(host) = &ran.host {
        log.scrub(host.secrets());
        let (lines, dropped) = host.take_logs();
        for line in lines {
            let kind = if line.meta["type"] == "http" {
                MessageKind::Http
            } else {
                MessageKind::Log
            };
            log.message(line.level, kind, &line.message, line.meta);
        }
        if dropped > 0 {
            log.set_meta("log_lines_dropped", json!(dropped));
        }
        let results = host.results();
        if !results.is_empty() {
            let summary: Vec<String> = results
                .iter()
                .map(|(model, r)| {
                    format!(
                        "{model}: {} added, {} updated, {} deleted",
                        r.added, r.updated, r.deleted
                    )
                })
                .collect();
            log.message(
                Level::Info,
                MessageKind::Result,
                &summary.join("; "),
                json!({"type": "result", "results": results}),
            );
        }
    }
    if let Some(e) = &error {
        log.message(Level::Error, MessageKind::Log, e, Value::Null);
    }
    let dropped = ctx.logs.record(log.finish(state, error.as_deref())).await;
    if dropped > 0 {
        tracing::warn!(task = %task.id, dropped, "operation log dropped");
    }
    dropped
}
