//! The runner function: receives task messages from the SQS runner queue (Lambda's event
//! source mapping) and runs each task. A script that fails is a task outcome recorded in
//! Postgres; only messages that could not be processed are reported as batch item failures,
//! so SQS redelivers just those (and moves poison messages to the DLQ). A task of an environment
//! outside this runner's group (LASSO_RUNNER_GROUP) is refused unrun and reported the same way.

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use futures::StreamExt;
use lasso_services::Context;

pub mod run;

use run::Outcome;

/// How many messages of one batch run at once.
const CONCURRENCY: usize = 10;

pub async fn handle(ctx: &Context, event: SqsEvent) -> SqsBatchResponse {
    // A batch no larger than what runs at once is started in one statement: every task of it
    // runs right away, so none sits STARTED without heartbeats. A larger one starts each task
    // as its turn comes.
    let records: Vec<(String, Option<String>)> = event
        .records
        .into_iter()
        .map(|r| (r.message_id.unwrap_or_default(), r.body))
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
                return failures_response(records.into_iter().map(|(id, _)| id).collect());
            }
        }
    }
    let started = &started;
    let failures = futures::stream::iter(records)
        .map(|(id, body)| async move {
            let Some(body) = body else {
                tracing::warn!(message_id = %id, "message without a body");
                return Some(id);
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
                    Outcome::Refused(_) => Some(id),
                },
                Err(e) => {
                    tracing::warn!(message_id = %id, error = %e, "message not processed");
                    Some(id)
                }
            }
        })
        .buffer_unordered(CONCURRENCY)
        .filter_map(|failed| async move { failed })
        .collect::<Vec<String>>()
        .await;
    failures_response(failures)
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
