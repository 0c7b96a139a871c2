//! SQL for `queue.schedules`, in named functions: one schedule per (connection, sync function),
//! kept in line with what is deployed by [`reconcile`], turned into sync tasks by
//! [`enqueue_due`] (the scheduler) and [`create_tasks`] (`POST /sync/trigger`).
//!
//! At most one task of a schedule is active: tasks are inserted with `ON CONFLICT DO NOTHING`
//! against the partial unique index on `queue.tasks (schedule_id)`.

use crate::{ConnectionRowId, EnvironmentId, IntegrationId};
use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{FromRow, PgExecutor, PgPool, Postgres, Transaction};
use uuid::Uuid;

use crate::Result;
use crate::queue::Payload;
use crate::queue::tasks::TaskState;

#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::Type)]
#[sqlx(
    type_name = "queue.schedule_state",
    rename_all = "SCREAMING_SNAKE_CASE"
)]
pub enum ScheduleState {
    Started,
    Paused,
    Deleted,
}

/// Which schedules a [`reconcile`] looks at; `None` means all.
#[derive(Debug, Default, Clone, Copy)]
pub struct ReconcileScope {
    pub environment: Option<EnvironmentId>,
    /// A connection's row id (`connections.id`).
    pub connection: Option<ConnectionRowId>,
}

impl ReconcileScope {
    pub fn environment(environment_id: EnvironmentId) -> Self {
        Self {
            environment: Some(environment_id),
            connection: None,
        }
    }

    pub fn connection(connection: ConnectionRowId) -> Self {
        Self {
            environment: None,
            connection: Some(connection),
        }
    }
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ReconcileReport {
    pub created: u64,
    /// Frequency changes and schedules revived by a sync deployed again.
    pub updated: u64,
    pub deleted: u64,
}

/// Brings the schedules in `scope` in line with what is deployed, in one statement:
/// - every active sync × connection of its integration has a schedule (STARTED when the sync
///   auto-starts, else PAUSED), its first run due now;
/// - a schedule follows its sync's frequency (the connection's override, when set, still wins);
///   its next run moves by the difference, and is due at once if that is in the past;
/// - schedules whose sync was removed are DELETED, and revived when it is deployed again.
///
/// Idempotent: when nothing changed it writes nothing.
pub async fn reconcile<'e>(
    db: impl PgExecutor<'e>,
    scope: ReconcileScope,
) -> Result<ReconcileReport> {
    let (created, updated, deleted): (i64, i64, i64) = sqlx::query_as(
        "WITH fns AS MATERIALIZED (
            SELECT f.environment_id, f.integration_id, f.name,
                   f.config ->> 'runs' AS frequency,
                   -- Capped at 100 years: one absurd frequency must not fail every reconcile.
                   LEAST((f.config ->> 'frequency_secs')::numeric, 3153600000)::bigint
                       AS frequency_secs,
                   COALESCE((f.config ->> 'auto_start')::boolean, true) AS auto_start
            FROM function_versions f
            WHERE f.active AND f.type = 'sync'
              AND ($1::bigint IS NULL OR f.environment_id = $1)
         ), wanted AS MATERIALIZED (
            -- Each sync's config is read once, not once per connection.
            SELECT fns.environment_id, c.id AS connection_id, fns.name, fns.frequency,
                   fns.frequency_secs, fns.auto_start
            FROM fns JOIN connections c ON c.integration_id = fns.integration_id
            WHERE ($2::bigint IS NULL OR c.id = $2)
         ), upserted AS (
            INSERT INTO queue.schedules AS s (id, environment_id, connection_id, function_name,
                state, frequency, frequency_secs, next_execution_at)
            SELECT queue.uuid_v7(), w.environment_id, w.connection_id, w.name,
                   CASE WHEN w.auto_start THEN 'STARTED' ELSE 'PAUSED' END::queue.schedule_state,
                   w.frequency, w.frequency_secs, now()
            FROM wanted w
            LEFT JOIN queue.schedules cur
                   ON cur.connection_id = w.connection_id AND cur.function_name = w.name
            WHERE cur.id IS NULL OR cur.state = 'DELETED' OR cur.frequency <> w.frequency
               OR cur.frequency_secs <> w.frequency_secs
            ON CONFLICT (connection_id, function_name) DO UPDATE SET
                frequency = EXCLUDED.frequency,
                frequency_secs = EXCLUDED.frequency_secs,
                state = CASE WHEN s.state = 'DELETED' THEN EXCLUDED.state ELSE s.state END,
                deleted_at = NULL,
                next_execution_at = CASE
                    WHEN s.state = 'DELETED' THEN now()
                    WHEN s.frequency_override_secs IS NULL THEN GREATEST(now(),
                        s.next_execution_at + make_interval(secs =>
                            (EXCLUDED.frequency_secs - s.frequency_secs)::double precision))
                    ELSE s.next_execution_at END,
                updated_at = now()
            RETURNING (xmax = 0) AS inserted
         ), removed AS (
            UPDATE queue.schedules s
            SET state = 'DELETED', deleted_at = now(), updated_at = now()
            WHERE s.state <> 'DELETED'
              AND ($1::bigint IS NULL OR s.environment_id = $1)
              AND ($2::bigint IS NULL OR s.connection_id = $2)
              -- Index probes per schedule rather than a join with `wanted`: the generic plan
              -- of the prepared statement misjudged its size and scanned all of it for each
              -- schedule, seconds a tick at a few thousand connections.
              AND NOT EXISTS (
                SELECT 1 FROM connections c
                JOIN function_versions f ON f.integration_id = c.integration_id
                 AND f.type = 'sync' AND f.name = s.function_name AND f.active
                WHERE c.id = s.connection_id
                  AND ($1::bigint IS NULL OR f.environment_id = $1))
            RETURNING 1
         )
         SELECT (SELECT count(*) FROM upserted WHERE inserted),
                (SELECT count(*) FROM upserted WHERE NOT inserted),
                (SELECT count(*) FROM removed)",
    )
    .bind(scope.environment)
    .bind(scope.connection)
    .fetch_one(db)
    .await?;
    Ok(ReconcileReport {
        created: created as u64,
        updated: updated as u64,
        deleted: deleted as u64,
    })
}

/// The INSERT of one sync task per schedule of the CTE `target (id, reset)`, as
/// [`FunctionPayload`](super::FunctionPayload): a `reset` run is full and starts from nothing; otherwise the
/// sync's own type decides `full`, and `last_sync_date` is when the schedule's last successful
/// run started (a change made upstream while that run was going is not missed). A schedule
/// with an active task gets none. Returns (task id, schedule id) per created task.
macro_rules! insert_tasks_for_target {
    () => {
        "INSERT INTO queue.tasks (id, environment_id, kind, group_key, name, payload,
            max_attempts, schedule_id)
         SELECT queue.uuid_v7(), s.environment_id, 'sync', 'env:' || s.environment_id,
                s.function_name,
                jsonb_build_object(
                    'integration', s.integration, 'connection_id', s.connection_id,
                    'function', s.function_name,
                    'full', target.reset OR s.sync_type = 'full',
                    'last_sync_date', CASE WHEN target.reset THEN NULL ELSE last_ok.started_at END),
                $2, s.id
         FROM target
         -- Index lookups per target schedule: OFFSET 0 keeps the planner from joining every
         -- schedule of the integration first (it did, misjudging the row counts, at each tick).
         CROSS JOIN LATERAL (
            SELECT s.id, s.environment_id, s.function_name, c.connection_id,
                   i.unique_key AS integration, f.config ->> 'sync_type' AS sync_type
            FROM queue.schedules s
            JOIN connections c ON c.id = s.connection_id
            JOIN integrations i ON i.id = c.integration_id
            JOIN function_versions f ON f.integration_id = c.integration_id AND f.type = 'sync'
                                    AND f.name = s.function_name AND f.active
            WHERE s.id = target.id
            OFFSET 0
         ) s
         LEFT JOIN LATERAL (
            SELECT t.started_at FROM queue.tasks t
            WHERE t.schedule_id = s.id AND t.state = 'SUCCEEDED'
            ORDER BY t.created_at DESC LIMIT 1
         ) last_ok ON true
         ON CONFLICT (schedule_id)
            WHERE schedule_id IS NOT NULL AND state IN ('CREATED', 'DISPATCHED', 'STARTED')
            DO NOTHING
         RETURNING id, schedule_id"
    };
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DueReport {
    /// Due schedules handled (their next run moved on).
    pub due: usize,
    /// Tasks created; fewer than `due` when a schedule's previous run was still going.
    pub created: usize,
}

/// Turns up to `limit` due STARTED schedules into sync tasks of `max_attempts` attempts, in one
/// statement, and moves each schedule's next run to the next multiple of its frequency after
/// now — also when its previous run was still going, so an overrunning sync skips the ticks
/// it missed instead of piling them up. Schedules another scheduler holds are skipped.
pub async fn enqueue_due(db: &PgPool, limit: i64, max_attempts: i32) -> Result<DueReport> {
    let (due, created): (i64, i64) = sqlx::query_as(concat!(
        "WITH due AS MATERIALIZED (
            SELECT s.id, s.next_execution_at,
                   COALESCE(s.frequency_override_secs, s.frequency_secs) AS every
            FROM queue.schedules s
            WHERE s.state = 'STARTED' AND s.next_execution_at <= now()
            ORDER BY s.next_execution_at
            LIMIT $1
            FOR UPDATE SKIP LOCKED
         ), advanced AS (
            UPDATE queue.schedules s
            SET next_execution_at = due.next_execution_at + make_interval(secs =>
                    (due.every * (floor(extract(epoch FROM now() - due.next_execution_at)
                                        / due.every) + 1))::double precision)
            FROM due WHERE s.id = due.id
            RETURNING s.id
         ), target AS (
            SELECT id, false AS reset FROM due
         ), created AS (",
        insert_tasks_for_target!(),
        ")
         SELECT (SELECT count(*) FROM advanced), (SELECT count(*) FROM created)"
    ))
    .bind(limit)
    .bind(max_attempts)
    .fetch_one(db)
    .await?;
    Ok(DueReport {
        due: due as usize,
        created: created as usize,
    })
}

/// Creates a task now for each of `schedule_ids` (`reset`: a full run from nothing) unless it
/// has an active one. Returns (task id, schedule id) per created task.
pub async fn create_tasks(
    tx: &mut Transaction<'_, Postgres>,
    schedule_ids: &[Uuid],
    reset: bool,
    max_attempts: i32,
) -> Result<Vec<(Uuid, Uuid)>> {
    Ok(sqlx::query_as(concat!(
        "WITH target AS (SELECT id, $3::boolean AS reset FROM UNNEST($1::uuid[]) AS t(id)) ",
        insert_tasks_for_target!()
    ))
    .bind(schedule_ids)
    .bind(max_attempts)
    .bind(reset)
    .fetch_all(&mut **tx)
    .await?)
}

/// A schedule with what the sync API shows of it.
#[derive(Debug, Clone, FromRow)]
pub struct Schedule {
    pub id: Uuid,
    pub environment_id: EnvironmentId,
    /// The connection's row id.
    pub connection: ConnectionRowId,
    /// The connection's public id.
    pub connection_id: String,
    pub function_name: String,
    pub state: ScheduleState,
    /// In effect: the override when set, else the sync's own.
    pub frequency: String,
    pub frequency_secs: i64,
    pub next_execution_at: DateTime<Utc>,
}

/// The schedules of the environment's integration that are not DELETED, of one connection
/// (row id) or all, of the named syncs; ordered by connection id and sync name.
macro_rules! select_schedules {
    () => {
        "SELECT s.id, s.environment_id, s.connection_id AS connection,
                c.connection_id, s.function_name, s.state,
                COALESCE(s.frequency_override, s.frequency) AS frequency,
                COALESCE(s.frequency_override_secs, s.frequency_secs) AS frequency_secs,
                s.next_execution_at
         FROM queue.schedules s JOIN connections c ON c.id = s.connection_id
         WHERE s.environment_id = $1 AND c.integration_id = $2
           AND ($3::bigint IS NULL OR s.connection_id = $3)
           AND s.function_name = ANY($4)
           AND s.state <> 'DELETED'
         ORDER BY c.connection_id, s.function_name"
    };
}

/// Which schedules a sync API call is about: the environment's integration, one connection
/// (row id) or all, and the named syncs.
#[derive(Debug, Clone)]
pub struct Selected {
    pub environment_id: EnvironmentId,
    pub integration_id: IntegrationId,
    pub connection: Option<ConnectionRowId>,
    pub names: Vec<String>,
}

/// The selected schedules that are not DELETED, by connection id and sync name; `lock` holds
/// them until the transaction `db` belongs to ends, so no scheduler tick creates their tasks
/// meanwhile.
pub async fn find<'e>(
    db: impl PgExecutor<'e>,
    selected: &Selected,
    lock: bool,
) -> Result<Vec<Schedule>> {
    let sql = if lock {
        concat!(select_schedules!(), " FOR UPDATE OF s")
    } else {
        select_schedules!()
    };
    Ok(sqlx::query_as(sql)
        .bind(selected.environment_id)
        .bind(selected.integration_id)
        .bind(selected.connection)
        .bind(&selected.names)
        .fetch_all(db)
        .await?)
}

/// STARTED → PAUSED; returns the ids paused.
pub async fn pause<'e>(db: impl PgExecutor<'e>, ids: &[Uuid]) -> Result<Vec<Uuid>> {
    Ok(sqlx::query_scalar(
        "UPDATE queue.schedules SET state = 'PAUSED', updated_at = now()
         WHERE id = ANY($1) AND state = 'STARTED'
         RETURNING id",
    )
    .bind(ids)
    .fetch_all(db)
    .await?)
}

/// PAUSED → STARTED with the next run due now; returns the ids started.
pub async fn start(db: &PgPool, ids: &[Uuid]) -> Result<Vec<Uuid>> {
    Ok(sqlx::query_scalar(
        "UPDATE queue.schedules SET state = 'STARTED', next_execution_at = now(), updated_at = now()
         WHERE id = ANY($1) AND state = 'PAUSED'
         RETURNING id",
    )
    .bind(ids)
    .fetch_all(db)
    .await?)
}

/// Sets the connection's frequency override (`Some((as written, seconds))`) or removes it
/// (`None`); the next run moves by the difference between the new and old frequencies (due at
/// once if that is in the past). Returns the frequency now in effect, or `None` when the
/// schedule is DELETED or gone.
pub async fn set_frequency_override(
    db: &PgPool,
    id: Uuid,
    frequency: Option<(&str, i64)>,
) -> Result<Option<String>> {
    let (text, secs) = frequency.unzip();
    Ok(sqlx::query_scalar(
        "UPDATE queue.schedules
         SET frequency_override = $2, frequency_override_secs = $3,
             next_execution_at = GREATEST(now(), next_execution_at + make_interval(secs =>
                 (COALESCE($3, frequency_secs)
                  - COALESCE(frequency_override_secs, frequency_secs))::double precision)),
             updated_at = now()
         WHERE id = $1 AND state <> 'DELETED'
         RETURNING COALESCE(frequency_override, frequency)",
    )
    .bind(id)
    .bind(text)
    .bind(secs)
    .fetch_optional(db)
    .await?)
}

/// What the status of a schedule is made of, read from its tasks.
#[derive(Debug, Clone, FromRow)]
pub struct RunHistory {
    pub schedule_id: Uuid,
    /// The newest task: its state and payload.
    pub latest_state: Option<TaskState>,
    #[sqlx(json(nullable))]
    pub latest_payload: Option<Payload>,
    /// When the newest finished task finished, whatever its outcome.
    pub finished_at: Option<DateTime<Utc>>,
    /// The output of the newest successful task.
    pub last_success_output: Option<Value>,
    /// The sync's checkpoint for the connection.
    pub checkpoint: Option<Value>,
}

/// The run history of each schedule, in one statement.
pub async fn run_history(db: &PgPool, schedule_ids: &[Uuid]) -> Result<Vec<RunHistory>> {
    Ok(sqlx::query_as(
        "SELECT s.id AS schedule_id, latest.state AS latest_state,
                latest.payload AS latest_payload, finished.completed_at AS finished_at,
                ok.output AS last_success_output, cp.checkpoint
         FROM queue.schedules s
         LEFT JOIN LATERAL (
            SELECT t.state, t.payload FROM queue.tasks t
            WHERE t.schedule_id = s.id ORDER BY t.created_at DESC LIMIT 1
         ) latest ON true
         LEFT JOIN LATERAL (
            SELECT t.completed_at FROM queue.tasks t
            WHERE t.schedule_id = s.id AND t.completed_at IS NOT NULL
            ORDER BY t.created_at DESC LIMIT 1
         ) finished ON true
         LEFT JOIN LATERAL (
            SELECT t.output FROM queue.tasks t
            WHERE t.schedule_id = s.id AND t.state = 'SUCCEEDED'
            ORDER BY t.created_at DESC LIMIT 1
         ) ok ON true
         LEFT JOIN checkpoints cp
                ON cp.connection_id = s.connection_id AND cp.function_name = s.function_name
         WHERE s.id = ANY($1)",
    )
    .bind(schedule_ids)
    .fetch_all(db)
    .await?)
}
