//! One scheduler tick: bring sync schedules in line with what is deployed, expire tasks whose
//! timeouts passed and retry them, purge the seen sets of sync runs that died, turn due
//! schedules into sync tasks, hand ready work to the dispatcher, retry webhook deliveries that
//! are due, and delete expired auth sessions.

use crate::Result;
use crate::context::Context;
use crate::dispatcher::{self, DispatchReport};
use crate::queue::schedules::{self, DueReport, ReconcileReport, ReconcileScope};
use crate::queue::{TaskKind, tasks};
use crate::records;
use crate::syncs;
use crate::webhooks;

/// Webhook retries sent per tick.
const WEBHOOK_BATCH: i64 = 100;
/// Due schedules turned into tasks per statement.
const DUE_BATCH: i64 = 1000;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TickReport {
    pub reconciled: ReconcileReport,
    pub expired: usize,
    pub retried: usize,
    /// Runs whose seen sets were purged because their task no longer runs.
    pub purged_runs: u64,
    pub scheduled: DueReport,
    pub dispatched: DispatchReport,
    pub webhooks: webhooks::DeliveryReport,
}

pub async fn tick(ctx: &Context) -> Result<TickReport> {
    // The safety net: deploys and new connections reconcile their own scope at once.
    let reconciled = schedules::reconcile(&ctx.db, ReconcileScope::default()).await?;
    let expired = tasks::expire_stale(&ctx.db).await?;
    for t in &expired {
        tracing::warn!(task_id = %t.id, kind = t.kind.as_str(), attempt = t.attempt, "task expired");
    }
    let ids: Vec<_> = expired.iter().map(|t| t.id).collect();
    let retried = tasks::retry(&ctx.db, &ids).await?;
    // A sync whose last attempt expired has failed for good: say so, as for a script failure.
    for t in expired
        .iter()
        .filter(|t| t.kind == TaskKind::Sync && t.attempt >= t.max_attempts)
    {
        syncs::run_failed(ctx, t, t.error.as_ref().unwrap_or(&serde_json::Value::Null)).await;
    }
    let purged_runs = records::purge_dead_runs(&ctx.db).await?;
    let mut scheduled = DueReport::default();
    loop {
        let round = schedules::enqueue_due(&ctx.db, DUE_BATCH, syncs::SYNC_MAX_ATTEMPTS).await?;
        scheduled.due += round.due;
        scheduled.created += round.created;
        if round.due < DUE_BATCH as usize {
            break;
        }
    }
    let dispatched = dispatcher::dispatch_all(ctx).await?;
    let webhooks = webhooks::deliver_due(ctx, WEBHOOK_BATCH).await?;
    crate::auth_flows::purge_expired_sessions(ctx).await?;
    Ok(TickReport {
        reconciled,
        expired: expired.len(),
        retried: retried.len(),
        purged_runs,
        scheduled,
        dispatched,
        webhooks,
    })
}
