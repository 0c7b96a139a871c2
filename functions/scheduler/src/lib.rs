//! The scheduler function. EventBridge invokes it once a minute, but sync frequencies go down
//! to 30 seconds, so one invocation ticks every [`TICK_EVERY`] for most of that minute.

use std::time::{Duration, SystemTime};

use lasso_services::Context;
use lasso_services::scheduler::{self, TickReport};

/// Time between two ticks of one invocation.
pub const TICK_EVERY: Duration = Duration::from_secs(10);
/// The last tick starts at most this long after the first: the next invocation comes a minute
/// after this one.
pub const WINDOW: Duration = Duration::from_secs(50);
/// A tick starts only with at least this much time left before the invocation's deadline.
pub const STOP_BEFORE: Duration = Duration::from_secs(10);

/// One tick.
pub async fn handle(ctx: &Context) -> lasso_services::Result<TickReport> {
    // Boxed: a tick reaches down to sqlx opening a connection (pool acquire, connect, TLS
    // handshake), and inlined into the invocation's future under lambda_runtime's layers that
    // nesting passed rustc's query depth limit when computing the future's layout in optimized
    // builds. The box ends the nesting here, at one allocation per tick.
    let report = Box::pin(scheduler::tick(ctx)).await?;
    // Idle ticks come every few seconds: only ticks that did something are worth a line.
    if report == TickReport::default() {
        tracing::debug!("scheduler tick: nothing to do");
    } else {
        tracing::info!(
            scheduled = report.scheduled.created,
            expired = report.expired,
            retried = report.retried,
            dispatched = report.dispatched.sent,
            "scheduler tick"
        );
    }
    Ok(report)
}

/// One invocation: a tick at once, then one every [`TICK_EVERY`] while within [`WINDOW`] and
/// at least [`STOP_BEFORE`] from `deadline` (the Lambda context's). A failed tick is logged and
/// the next one comes on time: ending the invocation would leave due schedules, expired tasks
/// and undispatched work alone until EventBridge's next minute (after a database restart, a
/// schedule's next slot could pass while its run waits). Fails only when every tick failed.
pub async fn handle_invocation(
    ctx: &Context,
    deadline: SystemTime,
) -> lasso_services::Result<Vec<TickReport>> {
    let start = tokio::time::Instant::now();
    // Lambda never starts an invocation past its deadline; an emulator that sends a fixed one
    // long past (cargo lambda watch) gets the full window.
    let left_at_start = deadline
        .duration_since(SystemTime::now())
        .unwrap_or(WINDOW + STOP_BEFORE);
    let mut reports = Vec::new();
    let mut last_error = None;
    let mut next = Duration::ZERO;
    while next <= WINDOW && next + STOP_BEFORE <= left_at_start {
        tokio::time::sleep_until(start + next).await;
        match handle(ctx).await {
            Ok(report) => reports.push(report),
            Err(e) => {
                tracing::error!(error = %e, "scheduler tick failed; ticking on");
                last_error = Some(e);
            }
        }
        next += TICK_EVERY;
    }
    match last_error {
        Some(e) if reports.is_empty() => Err(e),
        _ => Ok(reports),
    }
}
