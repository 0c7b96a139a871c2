//! Syncs as Nango's API shows them. Schedules and their tasks live in the queue
//! ([`schedules`]).

use crate::context::Context;
use crate::queue::schedules::{self, ReconcileScope};

/// Attempts of one sync run: a run whose runner died expires and is tried again.
pub const SYNC_MAX_ATTEMPTS: i32 = 3;

/// Gives a stored connection (row id) the schedules of its integration's syncs. A failure is
/// logged, not returned: the connection is stored by then, and the scheduler's reconcile
/// catches up on its next tick.
pub async fn connection_stored(ctx: &Context, connection: i64) {
    if let Err(e) = schedules::reconcile(&ctx.db, ReconcileScope::connection(connection)).await {
        tracing::error!(connection, error = %e, "could not create the connection's sync schedules");
    }
}
