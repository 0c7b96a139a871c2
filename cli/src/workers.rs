//! The background loops of `lasso dev`: scheduler ticks, dispatcher rounds and the runner fed
//! by the local task transport (one queue and runner loop per runner group) — the same handlers
//! the Lambda functions run.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use lasso_services::{Context, runner_groups};
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;

use crate::event_source::{self, Mapping};

pub struct Workers {
    shutdown: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

/// How often the scheduler and dispatcher loops look for work.
#[derive(Clone, Copy, Debug)]
pub struct Intervals {
    /// Between scheduler ticks. Sync frequencies go down to 30 s; tick often enough that a run
    /// starts close to its time.
    pub scheduler: Duration,
    /// How long an idle dispatcher waits before it looks again. When its last claim left ready
    /// tasks behind, a runner round that ends cuts the wait short (a run that ended frees a
    /// slot under the environment's limit).
    pub dispatcher_idle: Duration,
}

impl Default for Intervals {
    fn default() -> Self {
        Self {
            scheduler: Duration::from_secs(2),
            dispatcher_idle: Duration::from_millis(100),
        }
    }
}
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
const GROUPS_EVERY: Duration = Duration::from_secs(5);
/// Runner loops per group, as Lambda runs several runners of a group at once: a script that
/// waits on another task (`nango.triggerAction`) must not hold up the runner that task needs.
const RUNNERS_PER_GROUP: usize = 4;
/// Deliveries before a message is dropped as dead-lettered (the template's default).
const MAX_RECEIVE_COUNT: u32 = 5;

impl Workers {
    /// Starts the scheduler, dispatcher and runner loops on `ctx`.
    pub fn start(ctx: Context) -> Self {
        Self::start_with(ctx, Intervals::default())
    }

    /// `start` with other intervals than `lasso dev`'s.
    pub fn start_with(ctx: Context, intervals: Intervals) -> Self {
        let (shutdown, stop) = watch::channel(false);
        let mut tasks = JoinSet::new();
        // Runner rounds that ran tasks wake a dispatcher that left ready tasks behind: with an
        // environment at its limit the dispatcher claims nothing, and waiting out the idle
        // interval before refilling the freed slots capped a busy environment at its limit per
        // interval. Otherwise it is not woken, so sequential actions (sent at once on enqueue)
        // do not pay for a dispatcher round each.
        let rounds_ended = Arc::new(Notify::new());

        let (c, mut s) = (ctx.clone(), stop.clone());
        tasks.spawn(async move {
            loop {
                if let Err(e) = lasso_scheduler::handle(&c).await {
                    tracing::error!(error = %e, "scheduler tick failed");
                }
                if wait_or_stop(&mut s, intervals.scheduler).await {
                    return;
                }
            }
        });

        let (c, mut s, woken) = (ctx.clone(), stop.clone(), rounds_ended.clone());
        tasks.spawn(async move {
            loop {
                let (idle, waiting) = match lasso_dispatcher::handle(&c).await {
                    Ok(report) => (report.claimed == 0, report.ready_left_behind),
                    // Tried again after the interval, or sooner when a run ends.
                    Err(e) => {
                        tracing::error!(error = %e, "dispatch failed");
                        (true, true)
                    }
                };
                if idle && waiting {
                    tokio::select! {
                        _ = woken.notified() => {}
                        stopped = wait_or_stop(&mut s, intervals.dispatcher_idle) => if stopped { return },
                    }
                } else if idle && wait_or_stop(&mut s, intervals.dispatcher_idle).await {
                    return;
                }
                if *s.borrow() {
                    return;
                }
            }
        });

        // Runner loops per runner group, as each group has its own queue and runners on
        // AWS; a group an environment starts using later gets its loop within a few seconds.
        let (c, mut s) = (ctx, stop);
        tasks.spawn(async move {
            let mut runners = JoinSet::new();
            let mut started = HashSet::new();
            loop {
                match runner_groups::in_use(&c.db).await {
                    Ok(groups) => {
                        for group in groups {
                            if started.contains(&group) {
                                continue;
                            }
                            match c.for_runner_group(&group) {
                                Ok(runner) => {
                                    tracing::info!(runner_group = %group, loops = RUNNERS_PER_GROUP, "runner loops started");
                                    for _ in 0..RUNNERS_PER_GROUP {
                                        runners.spawn(run_runner(
                                            runner.clone(),
                                            s.clone(),
                                            rounds_ended.clone(),
                                        ));
                                    }
                                    started.insert(group);
                                }
                                Err(e) => tracing::error!(runner_group = %group, error = %e, "no runner for the group"),
                            }
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "listing runner groups failed"),
                }
                if wait_or_stop(&mut s, GROUPS_EVERY).await {
                    while runners.join_next().await.is_some() {}
                    return;
                }
            }
        });

        Self { shutdown, tasks }
    }

    /// Asks every loop to stop and waits for them.
    pub async fn stop(mut self) {
        let _ = self.shutdown.send(true);
        while self.tasks.join_next().await.is_some() {}
    }
}

/// Sleeps for `period`; true when shutdown was requested meanwhile.
pub(crate) async fn wait_or_stop(stop: &mut watch::Receiver<bool>, period: Duration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(period) => *stop.borrow(),
        _ = stop.changed() => true,
    }
}

/// Feeds the group's queue to the runner, as Lambda's event source mapping does; notifies
/// `ended` after each round that ran tasks.
async fn run_runner(c: Context, mut s: watch::Receiver<bool>, ended: Arc<Notify>) {
    let mapping = Mapping {
        max_receive_count: Some(MAX_RECEIVE_COUNT),
        ..Mapping::default()
    };
    let queue = c.transport();
    while !*s.borrow() {
        let round = event_source::pump_once(queue.as_ref(), &mapping, |event| {
            let c = c.clone();
            async move { Ok(lasso_runner::handle(&c, event).await) }
        });
        tokio::pin!(round);
        let result = tokio::select! {
            result = &mut round => result,
            // Give a running script a moment to finish; past that its task is left
            // STARTED and expires through its heartbeat timeout, as after a crash.
            _ = s.changed() => match tokio::time::timeout(SHUTDOWN_GRACE, &mut round).await {
                Ok(result) => result,
                Err(_) => return,
            },
        };
        match result {
            Ok(0) => {}
            Ok(_) => ended.notify_one(),
            Err(e) => {
                tracing::error!(error = %e, "runner round failed");
                if wait_or_stop(&mut s, Duration::from_secs(1)).await {
                    return;
                }
            }
        }
    }
}
