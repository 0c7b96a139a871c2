//! The runner function: receives task messages from the SQS runner queue (Lambda's event
//! source mapping) and runs each task. A script that fails is a task outcome recorded in
//! Postgres; only messages that could not be processed are reported as batch item failures,
//! so SQS redelivers just those (and moves poison messages to the DLQ). A task of an environment
//! outside this runner's group (LASSO_RUNNER_GROUP) is refused unrun and reported the same way.

use std::collections::HashMap;
use std::time::Duration;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use futures::StreamExt;
use lasso_services::Context;

pub mod run;

use run::Outcome;

/// How many messages of one batch run at once.
const CONCURRENCY: usize = 10;

/// When a message fails for a passing reason (the database restarting), it comes back after this
/// rather than after the queue's visibility timeout (a minute or more): otherwise its task waits
/// past its schedule's next slot, and that slot is skipped.
const TRANSIENT_RETRY_AFTER: Duration = Duration::from_secs(2);

pub async fn handle(ctx: &Context, event: SqsEvent) -> SqsBatchResponse {
    // A batch no larger than what runs at once is started in one statement: every task of it
    // runs right away, so none sits STARTED without heartbeats. A larger one starts each task
    // as its turn comes.
    let mut receipts = HashMap::new();
    let records: Vec<(String, Option<String>)> = event
        .records
        .into_iter()
        .map(|r| {
            let id = r.message_id.unwrap_or_default();
            if let Some(receipt) = r.receipt_handle {
                receipts.insert(id.clone(), receipt);
            }
            (id, r.body)
        })
        .collect();
    let mut started = None;
    if records.len() <= CONCURRENCY {
        let ids: Vec<uuid::Uuid> = records
            .iter()
            .filter_map(|(_, body)| run::parse_message(body.as_deref()?).ok())
            .collect();
        // A database that just restarted fails the first query of a pooled connection; the
        // pool then checks its other connections (lasso_core::db), so once more is enough.
        // Without it the whole batch would wait for SQS's visibility timeout.
        let mut attempt = run::start_batch(ctx, &ids).await;
        if let Err(e) = &attempt
            && e.is_transient()
        {
            tracing::warn!(error = %e, "starting the batch failed; trying once more");
            attempt = run::start_batch(ctx, &ids).await;
        }
        match attempt {
            Ok(tasks) => started = Some(std::sync::Mutex::new(tasks)),
            Err(e) => {
                tracing::warn!(error = %e, "starting the batch failed; redelivering it");
                let ids: Vec<String> = records.into_iter().map(|(id, _)| id).collect();
                if e.is_transient() {
                    retry_soon(ctx, &ids, &receipts).await;
                }
                return failures_response(ids);
            }
        }
    }
    let started = &started;
    let (failures, transient): (Vec<String>, Vec<bool>) = futures::stream::iter(records)
        .map(|(id, body)| async move {
            let Some(body) = body else {
                tracing::warn!(message_id = %id, "message without a body");
                return Some((id, false));
            };
            let span = tracing::info_span!("message", message_id = %id);
            let processed = async {
                let Some(started) = started else {
                    return run::process_message(ctx, &body).await;
                };
                let task_id = run::parse_message(&body)?;
                // Taken out, so a second message for the same task is a duplicate.
                let task = started.lock().expect("started tasks lock").remove(&task_id);
                match task {
                    Some(task) => run::run_started(ctx, task).await,
                    None => run::not_started(ctx, task_id).await,
                }
            };
            match tracing::Instrument::instrument(processed, span).await {
                Ok(outcome) => match outcome {
                    Outcome::Succeeded(task) => {
                        tracing::info!(%task, "task succeeded");
                        None
                    }
                    Outcome::Failed(task) => {
                        tracing::info!(%task, "task failed");
                        None
                    }
                    Outcome::Skipped(task) => {
                        tracing::info!(%task, "task already taken; duplicate delivery ignored");
                        None
                    }
                    // Not ours to run or to delete: SQS redelivers it until its receive count
                    // moves it to the dead-letter queue, where an operator sees it.
                    Outcome::Refused(_) => Some((id, false)),
                },
                Err(e) => {
                    tracing::warn!(message_id = %id, error = %e, "message not processed");
                    Some((id, e.is_transient()))
                }
            }
        })
        .buffer_unordered(CONCURRENCY)
        .filter_map(|failed| async move { failed })
        .collect::<Vec<(String, bool)>>()
        .await
        .into_iter()
        .unzip();
    let soon: Vec<String> = failures
        .iter()
        .zip(&transient)
        .filter(|(_, transient)| **transient)
        .map(|(id, _)| id.clone())
        .collect();
    retry_soon(ctx, &soon, &receipts).await;
    failures_response(failures)
}

/// Makes the messages `ids` visible again after [`TRANSIENT_RETRY_AFTER`]. If that fails they
/// come back after the queue's visibility timeout, as they would without it.
async fn retry_soon(ctx: &Context, ids: &[String], receipts: &HashMap<String, String>) {
    if ids.is_empty() {
        return;
    }
    let queue = match ctx.queues.for_group(&ctx.config.runner_group) {
        Ok(queue) => queue,
        Err(e) => {
            tracing::warn!(error = %e, "no queue to hand failed messages back to early");
            return;
        }
    };
    for id in ids {
        let Some(receipt) = receipts.get(id) else {
            continue;
        };
        if let Err(e) = queue
            .change_visibility(receipt, TRANSIENT_RETRY_AFTER)
            .await
        {
            tracing::warn!(message_id = %id, error = %e, "could not hand the message back early");
        }
    }
}

fn failures_response(failures: Vec<String>) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    response.batch_item_failures = failures
        .into_iter()
        .map(|item_identifier| {
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = item_identifier;
            failure
        })
        .collect();
    response
}
