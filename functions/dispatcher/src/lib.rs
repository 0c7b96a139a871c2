//! The dispatcher function: moves ready tasks from the Postgres queue onto the runner queue.
//! Triggered by its EventBridge schedule (and called inline by the scheduler and the api's
//! action fast path through `lasso_services::dispatcher`).

use lasso_services::Context;
use lasso_services::dispatcher::{self, DispatchReport};

pub async fn handle(ctx: &Context) -> lasso_services::Result<DispatchReport> {
    let report = dispatcher::dispatch_all(ctx).await?;
    if report.claimed > 0 || report.redispatched > 0 {
        tracing::info!(
            claimed = report.claimed,
            redispatched = report.redispatched,
            sent = report.sent,
            released = report.released,
            "dispatched"
        );
    }
    Ok(report)
}
