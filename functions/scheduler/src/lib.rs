//! The scheduler function: one tick per EventBridge invocation — expire stale tasks, then hand
//! ready work to the dispatcher.

use lasso_shared::Context;
use lasso_shared::scheduler::{self, TickReport};

pub async fn handle(ctx: &Context) -> lasso_shared::Result<TickReport> {
    let report = scheduler::tick(ctx).await?;
    tracing::info!(
        expired = report.expired,
        dispatched = report.dispatched.sent,
        "scheduler tick"
    );
    Ok(report)
}
