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
    let failures = futures::stream::iter(event.records)
        .map(|record| async move {
            let id = record.message_id.unwrap_or_default();
            let Some(body) = record.body else {
                tracing::warn!(message_id = %id, "message without a body");
                return Some(id);
            };
            let span = tracing::info_span!("message", message_id = %id);
            match tracing::Instrument::instrument(run::process_message(ctx, &body), span).await {
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
