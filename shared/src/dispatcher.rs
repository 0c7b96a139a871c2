//! Moves ready tasks from the Postgres queue onto the task transport.

use crate::Result;
use crate::adapters::transport::OutgoingMessage;
use crate::context::Context;
use crate::queue::{TaskMessage, tasks};

/// Tasks claimed per round (a multiple of SQS's batch size of 10).
pub const BATCH: i64 = 100;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DispatchReport {
    pub claimed: usize,
    pub sent: usize,
    pub released: usize,
}

/// One round: claim up to `BATCH` tasks, send them, and put back the ones that failed to send.
pub async fn dispatch_once(ctx: &Context) -> Result<DispatchReport> {
    let claimed = tasks::claim_for_dispatch(&ctx.db, BATCH).await?;
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
    let failed = match ctx.transport.send_batch(&messages).await {
        Ok(failed) => failed,
        Err(e) => {
            tracing::warn!(error = %e, "sending tasks failed; releasing them");
            messages.iter().map(|m| m.id.clone()).collect()
        }
    };
    let failed_ids: Vec<uuid::Uuid> = claimed
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
        claimed: claimed.len(),
        sent: claimed.len() - failed_ids.len(),
        released,
    })
}

/// The fast path for tasks someone is waiting on (actions, incoming webhooks): one round now
/// rather than at the dispatcher's next tick. A failure only delays them (they stay ready for
/// the next round), so it is logged rather than returned.
pub async fn dispatch_now(ctx: &Context) {
    if let Err(e) = dispatch_once(ctx).await {
        tracing::warn!(error = %e, "dispatching at once failed; the next round will");
    }
}

/// Dispatches until no ready task is left or a send fails (so a broken transport does not spin).
pub async fn dispatch_all(ctx: &Context) -> Result<DispatchReport> {
    let mut total = DispatchReport::default();
    loop {
        let round = dispatch_once(ctx).await?;
        total.claimed += round.claimed;
        total.sent += round.sent;
        total.released += round.released;
        if round.claimed < BATCH as usize || round.released > 0 {
            return Ok(total);
        }
    }
}
