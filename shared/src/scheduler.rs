//! One scheduler tick: expire tasks whose timeouts passed, then hand ready work to the
//! dispatcher.

use crate::Result;
use crate::context::Context;
use crate::dispatcher::{self, DispatchReport};
use crate::queue::tasks;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TickReport {
    pub expired: usize,
    pub dispatched: DispatchReport,
}

pub async fn tick(ctx: &Context) -> Result<TickReport> {
    let expired = tasks::expire_stale(&ctx.db).await?;
    for t in &expired {
        tracing::warn!(task_id = %t.id, kind = t.kind.as_str(), "task expired");
    }
    let dispatched = dispatcher::dispatch_all(ctx).await?;
    Ok(TickReport {
        expired: expired.len(),
        dispatched,
    })
}
