//! One scheduler tick: expire tasks whose timeouts passed, hand ready work to the dispatcher,
//! retry webhook deliveries that are due, and delete expired auth sessions.

use crate::Result;
use crate::context::Context;
use crate::dispatcher::{self, DispatchReport};
use crate::queue::tasks;
use crate::webhooks;

/// Webhook retries sent per tick.
const WEBHOOK_BATCH: i64 = 100;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TickReport {
    pub expired: usize,
    pub dispatched: DispatchReport,
    pub webhooks: webhooks::DeliveryReport,
}

pub async fn tick(ctx: &Context) -> Result<TickReport> {
    let expired = tasks::expire_stale(&ctx.db).await?;
    for t in &expired {
        tracing::warn!(task_id = %t.id, kind = t.kind.as_str(), "task expired");
    }
    let dispatched = dispatcher::dispatch_all(ctx).await?;
    let webhooks = webhooks::deliver_due(ctx, WEBHOOK_BATCH).await?;
    crate::auth_flows::purge_expired_sessions(ctx).await?;
    Ok(TickReport {
        expired: expired.len(),
        dispatched,
        webhooks,
    })
}
