//! Moves ready tasks from the Postgres queue onto the task transport, at most
//! `LASSO_ENVIRONMENT_CONCURRENCY` dispatched or running per group (see
//! [`tasks::claim_for_dispatch`]), and sends again the tasks whose message went missing.

use std::collections::HashSet;

use uuid::Uuid;

use crate::Result;
use crate::adapters::transport::OutgoingMessage;
use crate::context::Context;
use crate::queue::{Task, TaskMessage, tasks};

/// Tasks claimed per round (a multiple of SQS's batch size of 10).
pub const BATCH: i64 = 100;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DispatchReport {
    pub claimed: usize,
    /// Tasks stuck in DISPATCHED whose message was sent again.
    pub redispatched: usize,
    pub sent: usize,
    pub released: usize,
}

impl DispatchReport {
    fn add(&mut self, other: DispatchReport) {
        self.claimed += other.claimed;
        self.redispatched += other.redispatched;
        self.sent += other.sent;
        self.released += other.released;
    }
}

/// One round: claim up to `BATCH` tasks within the groups' limits and send them.
pub async fn dispatch_once(ctx: &Context) -> Result<DispatchReport> {
    let limit = i64::from(ctx.config.environment_concurrency);
    let claimed = tasks::claim_for_dispatch(&ctx.db, BATCH, limit).await?;
    let mut report = send(ctx, &claimed).await?;
    report.claimed = claimed.len();
    Ok(report)
}

/// Sends again up to `BATCH` tasks that stayed DISPATCHED past `LASSO_REDISPATCH_AFTER_SECS`.
/// They still count against their group's limit, so nothing is claimed for them.
pub async fn redispatch_stuck(ctx: &Context) -> Result<DispatchReport> {
    let stuck = tasks::claim_stuck_dispatched(&ctx.db, ctx.config.redispatch_after, BATCH).await?;
    for t in &stuck {
        tracing::warn!(task_id = %t.id, "task dispatched but not started; sending it again");
    }
    let mut report = send(ctx, &stuck).await?;
    report.redispatched = stuck.len();
    Ok(report)
}

/// Sends one message per task and puts the tasks whose message failed back to CREATED (the
/// release is conditional, so a task a runner already started stays started).
async fn send(ctx: &Context, claimed: &[Task]) -> Result<DispatchReport> {
    if claimed.is_empty() {
        return Ok(DispatchReport::default());
    }
    let messages: Vec<OutgoingMessage> = claimed
        .iter()
        .map(|t| OutgoingMessage {
            id: t.id.simple().to_string(),
            body: serde_json::to_string(&TaskMessage { task_id: t.id })
                .expect("task message serializes"),
        })
        .collect();
    let failed: HashSet<String> = match ctx.transport.send_batch(&messages).await {
        Ok(failed) => failed.into_iter().collect(),
        Err(e) => {
            tracing::warn!(error = %e, "sending tasks failed; releasing them");
            messages.iter().map(|m| m.id.clone()).collect()
        }
    };
    let failed_ids: Vec<Uuid> = claimed
        .iter()
        .filter(|t| failed.contains(&t.id.simple().to_string()))
        .map(|t| t.id)
        .collect();
    let released = if failed_ids.is_empty() {
        0
    } else {
        tasks::release_dispatch(&ctx.db, &failed_ids).await? as usize
    };
    Ok(DispatchReport {
        sent: claimed.len() - failed_ids.len(),
        released,
        ..DispatchReport::default()
    })
}

/// Sends again what is stuck, then dispatches until no group has both ready tasks and room, or a
/// send fails (so a broken transport does not spin).
pub async fn dispatch_all(ctx: &Context) -> Result<DispatchReport> {
    let mut total = redispatch_stuck(ctx).await?;
    loop {
        let round = dispatch_once(ctx).await?;
        total.add(round);
        if round.claimed < BATCH as usize || round.released > 0 {
            return Ok(total);
        }
    }
}
