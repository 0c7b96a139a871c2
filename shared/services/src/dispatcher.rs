//! Moves ready tasks from the Postgres queue onto their runner group's queue, at most
//! `LASSO_ENVIRONMENT_CONCURRENCY` dispatched or running per group (see
//! [`tasks::claim_for_dispatch`]), and sends again the tasks whose message went missing.

use std::collections::{BTreeMap, HashSet};

use serde_json::json;
use uuid::Uuid;

use crate::EnvironmentId;
use crate::Result;
use crate::adapters::transport::OutgoingMessage;
use crate::context::Context;
use crate::queue::{NewTask, Task, TaskMessage, tasks};
use crate::runner_groups;

/// Tasks claimed per round (a multiple of SQS's batch size of 10).
pub const BATCH: i64 = 100;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DispatchReport {
    pub claimed: usize,
    /// Tasks stuck in DISPATCHED whose message was sent again.
    pub redispatched: usize,
    pub sent: usize,
    pub released: usize,
    /// Tasks failed because their runner group has no queue.
    pub failed: usize,
    /// The last round left ready tasks behind (see [`tasks::Claim`]).
    pub ready_left_behind: bool,
}

impl DispatchReport {
    fn add(&mut self, other: DispatchReport) {
        self.claimed += other.claimed;
        self.redispatched += other.redispatched;
        self.sent += other.sent;
        self.released += other.released;
        self.failed += other.failed;
        self.ready_left_behind = other.ready_left_behind;
    }
}

/// One round: claim up to `BATCH` tasks within the groups' limits and send them.
pub async fn dispatch_once(ctx: &Context) -> Result<DispatchReport> {
    let limit = i64::from(ctx.config.environment_concurrency);
    let claim = tasks::claim_for_dispatch(&ctx.db, BATCH, limit).await?;
    let mut report = send(ctx, &claim.tasks).await?;
    report.claimed = claim.tasks.len();
    report.ready_left_behind = claim.ready_left_behind;
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

/// Sends each task to its environment's runner group's queue (one batch per group) and puts
/// the tasks whose message failed back to CREATED (the release is conditional, so a task a
/// runner already started stays started). Tasks of a group without a queue fail with an error
/// naming the group rather than wait for a queue that will not come.
async fn send(ctx: &Context, claimed: &[Task]) -> Result<DispatchReport> {
    if claimed.is_empty() {
        return Ok(DispatchReport::default());
    }
    let environments: Vec<EnvironmentId> = claimed.iter().map(|t| t.environment_id).collect();
    let group_of = runner_groups::of_environments(&ctx.db, &environments).await?;
    let mut by_group: BTreeMap<&str, Vec<&Task>> = BTreeMap::new();
    for t in claimed {
        let group = group_of
            .get(&t.environment_id)
            .map_or(runner_groups::SHARED, String::as_str);
        by_group.entry(group).or_default().push(t);
    }
    send_by_group(ctx, by_group).await
}

async fn send_by_group(
    ctx: &Context,
    by_group: BTreeMap<&str, Vec<&Task>>,
) -> Result<DispatchReport> {
    let mut report = DispatchReport::default();
    let mut failed_ids = Vec::new();
    for (group, group_tasks) in by_group {
        let ids: Vec<Uuid> = group_tasks.iter().map(|t| t.id).collect();
        let queue = match ctx.queues.for_group(group) {
            Ok(queue) => queue,
            Err(e) => {
                tracing::error!(runner_group = group, tasks = ids.len(), error = %e, "no queue for the runner group; failing its tasks");
                let error = json!({"kind": "runner_group_unavailable", "message": e.to_string()});
                report.failed += tasks::fail_undeliverable(&ctx.db, &ids, &error).await? as usize;
                continue;
            }
        };
        let messages: Vec<OutgoingMessage> = group_tasks
            .iter()
            .map(|t| OutgoingMessage {
                id: t.id.simple().to_string(),
                body: serde_json::to_string(&TaskMessage { task_id: t.id })
                    .expect("task message serializes"),
            })
            .collect();
        let failed: HashSet<String> = match queue.send_batch(&messages).await {
            Ok(failed) => failed.into_iter().collect(),
            Err(e) => {
                tracing::warn!(runner_group = group, error = %e, "sending tasks failed; releasing them");
                messages.iter().map(|m| m.id.clone()).collect()
            }
        };
        let before = failed_ids.len();
        failed_ids.extend(
            ids.into_iter()
                .filter(|id| failed.contains(&id.simple().to_string())),
        );
        report.sent += group_tasks.len() - (failed_ids.len() - before);
    }
    if !failed_ids.is_empty() {
        report.released = tasks::release_dispatch(&ctx.db, &failed_ids).await? as usize;
    }
    Ok(report)
}

/// The fast path for tasks someone is waiting on (actions, incoming webhooks): one round now
/// rather than at the dispatcher's next tick. A failure only delays them (they stay ready for
/// the next round), so it is logged rather than returned.
pub async fn dispatch_now(ctx: &Context) {
    if let Err(e) = dispatch_once(ctx).await {
        tracing::warn!(error = %e, "dispatching at once failed; the next round will");
    }
}

/// Enqueues one task someone waits on (an action) and sends it at once when its group has room
/// and nothing older waiting ([`tasks::insert_dispatched`]): one transaction instead of an
/// insert and a dispatch round. Otherwise it is dispatched as [`dispatch_now`] does.
pub async fn enqueue_now(ctx: &Context, task: &NewTask) -> Result<Uuid> {
    let limit = i64::from(ctx.config.environment_concurrency);
    let (task, group) = tasks::insert_dispatched(&ctx.db, task, limit).await?;
    match group {
        Some(group) => {
            let by_group = BTreeMap::from([(group.as_str(), vec![&task])]);
            if let Err(e) = send_by_group(ctx, by_group).await {
                tracing::warn!(task_id = %task.id, error = %e, "sending a task at once failed; it is sent again later");
            }
        }
        None => dispatch_now(ctx).await,
    }
    Ok(task.id)
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
