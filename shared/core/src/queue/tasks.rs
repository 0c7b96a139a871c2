//! SQL for `queue.tasks`, in named functions.

use crate::EnvironmentId;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::types::Json;
use sqlx::{FromRow, PgExecutor, PgPool};
use uuid::Uuid;

use super::{FunctionPayload, Payload};
use crate::Result;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, sqlx::Type)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "queue.task_kind", rename_all = "snake_case")]
pub enum TaskKind {
    Sync,
    Action,
    Webhook,
    OnEvent,
    /// A bare script run (the walking skeleton, `lasso dev` smoke runs).
    Script,
}

impl TaskKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sync => "sync",
            Self::Action => "action",
            Self::Webhook => "webhook",
            Self::OnEvent => "on_event",
            Self::Script => "script",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, sqlx::Type)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[sqlx(type_name = "queue.task_state", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TaskState {
    Created,
    Dispatched,
    Started,
    Succeeded,
    Failed,
    Expired,
    Cancelled,
}

impl TaskState {
    /// The state as Postgres stores it (`SUCCEEDED`, ...), for display.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "CREATED",
            Self::Dispatched => "DISPATCHED",
            Self::Started => "STARTED",
            Self::Succeeded => "SUCCEEDED",
            Self::Failed => "FAILED",
            Self::Expired => "EXPIRED",
            Self::Cancelled => "CANCELLED",
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Self::Succeeded | Self::Failed | Self::Expired | Self::Cancelled
        )
    }
}

/// What travels on the runner queue: only the id. The runner loads the task from Postgres, so
/// a message carries no credentials and a forged one can only name a task that exists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskMessage {
    pub task_id: Uuid,
}

#[derive(Debug, Clone)]
pub struct NewTask {
    pub environment_id: EnvironmentId,
    pub kind: TaskKind,
    pub group_key: String,
    pub name: String,
    pub payload: Payload,
    pub max_attempts: i32,
    pub schedule_id: Option<Uuid>,
}

impl NewTask {
    /// A one-attempt task grouped by its environment.
    pub fn new(
        environment_id: EnvironmentId,
        kind: TaskKind,
        name: impl Into<String>,
        payload: Payload,
    ) -> Self {
        Self {
            environment_id,
            kind,
            group_key: format!("env:{environment_id}"),
            name: name.into(),
            payload,
            max_attempts: 1,
            schedule_id: None,
        }
    }
}

#[derive(Debug, Clone, FromRow)]
pub struct Task {
    pub id: Uuid,
    pub environment_id: EnvironmentId,
    pub kind: TaskKind,
    pub group_key: String,
    pub name: String,
    #[sqlx(json)]
    pub payload: Payload,
    pub state: TaskState,
    pub attempt: i32,
    pub max_attempts: i32,
    pub schedule_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub output: Option<Value>,
    pub error: Option<Value>,
    /// Seconds without a heartbeat after which a STARTED task expires.
    pub heartbeat_timeout_secs: i32,
}

/// The task columns, as a literal so queries stay `&'static str` (sqlx's injection guard).
macro_rules! columns {
    () => {
        "t.id, t.environment_id, t.kind, t.group_key, t.name, t.payload,
    t.state, t.attempt, t.max_attempts, t.schedule_id, t.created_at, t.started_at,
    t.completed_at, t.output, t.error, t.heartbeat_timeout_secs"
    };
}

/// Inserts tasks in one statement; returns their ids in input order.
pub async fn insert(db: &PgPool, tasks: &[NewTask]) -> Result<Vec<Uuid>> {
    let ids: Vec<Uuid> = tasks.iter().map(|_| Uuid::now_v7()).collect();
    sqlx::query(
        "INSERT INTO queue.tasks
            (id, environment_id, kind, group_key, name, payload, max_attempts, schedule_id)
         SELECT id, env, kind::queue.task_kind, grp, name, payload, max_attempts, schedule_id
         FROM UNNEST($1::uuid[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::jsonb[],
                     $7::int[], $8::uuid[])
              AS t(id, env, kind, grp, name, payload, max_attempts, schedule_id)",
    )
    .bind(&ids)
    .bind(tasks.iter().map(|t| t.environment_id).collect::<Vec<_>>())
    .bind(tasks.iter().map(|t| t.kind.as_str()).collect::<Vec<_>>())
    .bind(
        tasks
            .iter()
            .map(|t| t.group_key.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(tasks.iter().map(|t| t.name.as_str()).collect::<Vec<_>>())
    .bind(tasks.iter().map(|t| Json(&t.payload)).collect::<Vec<_>>())
    .bind(tasks.iter().map(|t| t.max_attempts).collect::<Vec<_>>())
    .bind(tasks.iter().map(|t| t.schedule_id).collect::<Vec<_>>())
    .execute(db)
    .await?;
    Ok(ids)
}

/// Inserts one task already DISPATCHED when its group could be claimed for it at once: nothing
/// older waits in the group and it has room under `group_limit`. Otherwise the task is CREATED
/// for the dispatcher, as [`insert`] makes it. Returns the task and, when DISPATCHED, its
/// environment's runner group, which its message goes to.
///
/// The group's dispatch lock is the one [`claim_for_dispatch`] takes, and the insert (which
/// counts) runs after it in the same transaction, so the count sees every claim committed
/// before; the limit holds as it does for claims.
pub async fn insert_dispatched(
    db: &PgPool,
    task: &NewTask,
    group_limit: i64,
) -> Result<(Task, Option<String>)> {
    #[derive(FromRow)]
    struct Inserted {
        #[sqlx(flatten)]
        task: Task,
        runner_group: Option<String>,
    }
    let mut tx = db.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('lasso:dispatch:' || $1, 0))")
        .bind(&task.group_key)
        .execute(&mut *tx)
        .await?;
    let row: Inserted = sqlx::query_as(concat!(
        "WITH decision AS (
            SELECT NOT EXISTS (SELECT 1 FROM queue.tasks r
                               WHERE r.group_key = $4 AND r.state = 'CREATED')
               AND (SELECT count(*) FROM (
                       SELECT 1 FROM queue.tasks r
                       WHERE r.group_key = $4 AND r.state IN ('DISPATCHED', 'STARTED')
                       LIMIT $9) running) < $9 AS now
         )
         INSERT INTO queue.tasks AS t
            (id, environment_id, kind, group_key, name, payload, max_attempts, schedule_id,
             state, dispatched_at, dispatch_count)
         SELECT $1, $2, $3::queue.task_kind, $4, $5, $6, $7, $8,
                CASE WHEN d.now THEN 'DISPATCHED' ELSE 'CREATED' END::queue.task_state,
                CASE WHEN d.now THEN now() END,
                CASE WHEN d.now THEN 1 ELSE 0 END
         FROM decision d
         RETURNING ",
        columns!(),
        ", CASE WHEN t.state = 'DISPATCHED'
                THEN (SELECT e.runner_group FROM environments e WHERE e.id = t.environment_id)
           END AS runner_group"
    ))
    .bind(Uuid::now_v7())
    .bind(task.environment_id)
    .bind(task.kind.as_str())
    .bind(&task.group_key)
    .bind(&task.name)
    .bind(Json(&task.payload))
    .bind(task.max_attempts)
    .bind(task.schedule_id)
    .bind(group_limit)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok((row.task, row.runner_group))
}

pub async fn get(db: &PgPool, id: Uuid) -> Result<Option<Task>> {
    let row: Option<Task> = sqlx::query_as(concat!(
        "SELECT ",
        columns!(),
        " FROM queue.tasks t WHERE t.id = $1"
    ))
    .bind(id)
    .fetch_optional(db)
    .await?;
    Ok(row)
}

/// What a dispatcher's claim took, and whether it left ready tasks behind.
#[derive(Debug, Default)]
pub struct Claim {
    pub tasks: Vec<Task>,
    /// Some group has ready tasks this claim did not take: the group has its limit's worth
    /// running (only a run ending lets them out, so a dispatcher may wait for one), or another
    /// dispatcher held the group's lock (its claim may fill the group).
    pub ready_left_behind: bool,
}

/// Claims up to `batch` CREATED tasks and marks them DISPATCHED, so that no group ever has more
/// than `group_limit` tasks DISPATCHED or STARTED, however many dispatchers claim at once.
///
/// Only a claim makes a group's running count grow, and a group is claimed only under its
/// transaction-scoped advisory lock. The first statement takes the locks; the second, whose
/// snapshot is taken after them, counts and claims — so it sees every earlier claim of those
/// groups committed (a lock is released only after its holder's commit is visible). Counting in
/// the locking statement would not do: its snapshot predates the lock. Groups another
/// dispatcher holds are skipped (`pg_try_…`), like rows under `SKIP LOCKED`.
///
/// Fairness: groups are taken by the age of their oldest ready task, full groups are left out
/// (so they cannot crowd out one with room), and the batch is shared out round-robin.
pub async fn claim_for_dispatch(db: &PgPool, batch: i64, group_limit: i64) -> Result<Claim> {
    let mut tx = db.begin().await?;
    let (groups, ready_left_behind): (Vec<String>, bool) = sqlx::query_as(
        "WITH RECURSIVE ready AS (
            -- One index probe per group: its first entry is its oldest ready task.
            (SELECT group_key, created_at FROM queue.tasks
             WHERE state = 'CREATED' ORDER BY group_key, created_at, id LIMIT 1)
            UNION ALL
            SELECT next.group_key, next.created_at FROM ready,
            LATERAL (SELECT t.group_key, t.created_at FROM queue.tasks t
                     WHERE t.state = 'CREATED' AND t.group_key > ready.group_key
                     ORDER BY t.group_key, t.created_at, t.id LIMIT 1) next
         ),
         sized AS MATERIALIZED (
            SELECT ready.group_key, ready.created_at,
                   (SELECT count(*) FROM (
                        SELECT 1 FROM queue.tasks r
                        WHERE r.group_key = ready.group_key AND r.state IN ('DISPATCHED', 'STARTED')
                        LIMIT $1) running) < $1 AS room
            FROM ready
         ),
         open AS MATERIALIZED (
            SELECT group_key FROM sized WHERE room ORDER BY created_at LIMIT $2
         ),
         locked AS MATERIALIZED (
            SELECT group_key FROM open
            WHERE pg_try_advisory_xact_lock(hashtextextended('lasso:dispatch:' || group_key, 0))
         )
         SELECT ARRAY(SELECT group_key FROM locked),
                EXISTS (SELECT 1 FROM sized WHERE NOT room)
                    OR (SELECT count(*) FROM open) > (SELECT count(*) FROM locked)",
    )
    .bind(group_limit)
    .bind(batch)
    .fetch_one(&mut *tx)
    .await?;
    if groups.is_empty() {
        tx.commit().await?;
        return Ok(Claim {
            tasks: Vec::new(),
            ready_left_behind,
        });
    }
    let rows: Vec<Task> = sqlx::query_as(concat!(
        "WITH claim AS MATERIALIZED (
            SELECT c.id FROM unnest($1::text[]) AS g(group_key),
            LATERAL (SELECT $2 - count(*) AS room FROM (
                        SELECT 1 FROM queue.tasks r
                        WHERE r.group_key = g.group_key AND r.state IN ('DISPATCHED', 'STARTED')
                        LIMIT $2) running) f,
            LATERAL (SELECT s.id, s.created_at,
                            row_number() OVER (ORDER BY s.created_at, s.id) AS turn
                     FROM (SELECT t.id, t.created_at FROM queue.tasks t
                           WHERE t.group_key = g.group_key AND t.state = 'CREATED'
                           ORDER BY t.created_at, t.id
                           LIMIT least(f.room, $3)
                           FOR UPDATE SKIP LOCKED) s) c
            ORDER BY c.turn, c.created_at
            LIMIT $3
         )
         UPDATE queue.tasks t
         SET state = 'DISPATCHED', dispatched_at = now(), dispatch_count = t.dispatch_count + 1
         FROM claim WHERE t.id = claim.id AND t.state = 'CREATED'
         RETURNING ",
        columns!(),
        ""
    ))
    .bind(&groups)
    .bind(group_limit)
    .bind(batch)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Claim {
        tasks: rows,
        ready_left_behind,
    })
}

/// Takes up to `limit` tasks that have been DISPATCHED for longer than `after` without starting
/// (their message may be lost: a crash between claim and send, a restarted local queue) and
/// stamps them as sent again. Tasks past their created→started timeout are left to expiry.
/// Sending twice is harmless: only one delivery can start a task.
pub async fn claim_stuck_dispatched(
    db: &PgPool,
    after: std::time::Duration,
    limit: i64,
) -> Result<Vec<Task>> {
    let rows: Vec<Task> = sqlx::query_as(concat!(
        "WITH stuck AS MATERIALIZED (
            SELECT id FROM queue.tasks
            WHERE state = 'DISPATCHED'
              AND dispatched_at < now() - make_interval(secs => $1)
              AND created_at + make_interval(secs => created_to_started_secs) > now()
            ORDER BY dispatched_at
            LIMIT $2
            FOR UPDATE SKIP LOCKED
         )
         UPDATE queue.tasks t
         SET dispatched_at = now(), dispatch_count = t.dispatch_count + 1
         FROM stuck WHERE t.id = stuck.id AND t.state = 'DISPATCHED'
         RETURNING ",
        columns!(),
        ""
    ))
    .bind(after.as_secs_f64())
    .bind(limit)
    .fetch_all(db)
    .await?;
    Ok(rows)
}

/// Puts tasks whose message could not be sent back to CREATED for the next dispatch.
pub async fn release_dispatch(db: &PgPool, ids: &[Uuid]) -> Result<u64> {
    Ok(sqlx::query(
        "UPDATE queue.tasks SET state = 'CREATED', dispatched_at = NULL
         WHERE id = ANY($1) AND state = 'DISPATCHED'",
    )
    .bind(ids)
    .execute(db)
    .await?
    .rows_affected())
}

/// DISPATCHED → FAILED for tasks that cannot be delivered at all (their runner group has no
/// queue); returns how many were still DISPATCHED.
pub async fn fail_undeliverable(db: &PgPool, ids: &[Uuid], error: &Value) -> Result<u64> {
    Ok(sqlx::query(
        "UPDATE queue.tasks SET state = 'FAILED', completed_at = now(), error = $2
         WHERE id = ANY($1) AND state = 'DISPATCHED'",
    )
    .bind(ids)
    .bind(error)
    .execute(db)
    .await?
    .rows_affected())
}

/// DISPATCHED → STARTED, for a runner of `runner_group`. `None` when someone else already
/// started (or finished) it, which is how duplicate deliveries become no-ops, or when the task's
/// environment belongs to another group ([`runner_group_of`] tells which).
pub async fn start(db: &PgPool, id: Uuid, runner_group: &str) -> Result<Option<Task>> {
    let row: Option<Task> = sqlx::query_as(concat!(
        "UPDATE queue.tasks t SET state = 'STARTED', started_at = now(), last_heartbeat_at = now()
         WHERE t.id = $1 AND t.state = 'DISPATCHED'
           AND EXISTS (SELECT 1 FROM environments e
                       WHERE e.id = t.environment_id AND e.runner_group = $2)
         RETURNING ",
        columns!(),
        ""
    ))
    .bind(id)
    .bind(runner_group)
    .fetch_optional(db)
    .await?;
    Ok(row)
}

/// [`start`] for a batch of deliveries in one statement: each task still DISPATCHED and of an
/// environment in `runner_group` becomes STARTED; the others (duplicates, finished, another
/// group's) are left as they are and missing from the result, as [`start`] returns `None` for
/// them. The rows are locked in id order first, so two overlapping batches cannot deadlock.
pub async fn start_many(db: &PgPool, ids: &[Uuid], runner_group: &str) -> Result<Vec<Task>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let rows: Vec<Task> = sqlx::query_as(concat!(
        "WITH claim AS MATERIALIZED (
            SELECT c.id FROM queue.tasks c
            WHERE c.id = ANY($1) AND c.state = 'DISPATCHED'
              AND EXISTS (SELECT 1 FROM environments e
                          WHERE e.id = c.environment_id AND e.runner_group = $2)
            ORDER BY c.id
            FOR UPDATE
         )
         UPDATE queue.tasks t SET state = 'STARTED', started_at = now(), last_heartbeat_at = now()
         FROM claim WHERE t.id = claim.id AND t.state = 'DISPATCHED'
         RETURNING ",
        columns!(),
        ""
    ))
    .bind(ids)
    .bind(runner_group)
    .fetch_all(db)
    .await?;
    Ok(rows)
}

/// [`succeed`] for a batch in one statement: each `(id, output)` whose task is still STARTED
/// becomes SUCCEEDED with its output. Returns `(id, payload)` of the tasks it finished; a task
/// no longer STARTED (cancelled, expired) is left out. Locks in id order, as [`start_many`].
pub async fn succeed_many(db: &PgPool, done: &[(Uuid, Value)]) -> Result<Vec<(Uuid, Payload)>> {
    if done.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<Uuid> = done.iter().map(|(id, _)| *id).collect();
    let outputs: Vec<Json<&Value>> = done.iter().map(|(_, output)| Json(output)).collect();
    let rows: Vec<(Uuid, Json<Payload>)> = sqlx::query_as(
        "WITH done AS (
            SELECT DISTINCT ON (id) id, output
            FROM UNNEST($1::uuid[], $2::jsonb[]) AS d(id, output)
            ORDER BY id
         ), finish AS MATERIALIZED (
            SELECT c.id FROM queue.tasks c
            WHERE c.id = ANY($1) AND c.state = 'STARTED'
            ORDER BY c.id
            FOR UPDATE
         )
         UPDATE queue.tasks t
         SET state = 'SUCCEEDED', completed_at = now(), output = done.output
         FROM finish JOIN done ON done.id = finish.id
         WHERE t.id = finish.id AND t.state = 'STARTED'
         RETURNING t.id, t.payload",
    )
    .bind(&ids)
    .bind(&outputs)
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().map(|(id, p)| (id, p.0)).collect())
}

/// The runner group of the task's environment; `None` when the task does not exist or, for a
/// runner's database user, belongs to another group (row-level security hides it).
pub async fn runner_group_of(db: &PgPool, id: Uuid) -> Result<Option<String>> {
    Ok(sqlx::query_scalar(
        "SELECT e.runner_group FROM queue.tasks t JOIN environments e ON e.id = t.environment_id
         WHERE t.id = $1",
    )
    .bind(id)
    .fetch_optional(db)
    .await?)
}

/// STARTED → DISPATCHED, for a runner that claimed a task but could not begin it (its script
/// store was unreachable), so the redelivered message can.
pub async fn release_start(db: &PgPool, id: Uuid) -> Result<bool> {
    Ok(sqlx::query(
        "UPDATE queue.tasks SET state = 'DISPATCHED', started_at = NULL, last_heartbeat_at = NULL
         WHERE id = $1 AND state = 'STARTED'",
    )
    .bind(id)
    .execute(db)
    .await?
    .rows_affected()
        == 1)
}

/// Records liveness; false when the task is no longer STARTED (expired or cancelled), which
/// tells the runner to stop.
pub async fn heartbeat(db: &PgPool, id: Uuid) -> Result<bool> {
    Ok(sqlx::query(
        "UPDATE queue.tasks SET last_heartbeat_at = now() WHERE id = $1 AND state = 'STARTED'",
    )
    .bind(id)
    .execute(db)
    .await?
    .rows_affected()
        == 1)
}

/// STARTED → SUCCEEDED with the output. Returns the task's payload as it was when it
/// finished (someone may have flagged it meanwhile), or `None` when the task was no longer
/// STARTED.
pub async fn succeed(db: &PgPool, id: Uuid, output: &Value) -> Result<Option<Payload>> {
    let payload: Option<Json<Payload>> = sqlx::query_scalar(
        "UPDATE queue.tasks SET state = 'SUCCEEDED', completed_at = now(), output = $2
         WHERE id = $1 AND state = 'STARTED'
         RETURNING payload",
    )
    .bind(id)
    .bind(output)
    .fetch_optional(db)
    .await?;
    Ok(payload.map(|p| p.0))
}

/// STARTED → FAILED with the error. False when the task was no longer STARTED.
pub async fn fail(db: &PgPool, id: Uuid, error: &Value) -> Result<bool> {
    Ok(sqlx::query(
        "UPDATE queue.tasks SET state = 'FAILED', completed_at = now(), error = $2
         WHERE id = $1 AND state = 'STARTED'",
    )
    .bind(id)
    .bind(error)
    .execute(db)
    .await?
    .rows_affected()
        == 1)
}

/// Marks in-flight tasks whose timeouts passed as EXPIRED; returns how many.
pub async fn expire_stale(db: &PgPool) -> Result<Vec<Task>> {
    let rows: Vec<Task> = sqlx::query_as(concat!(
        "UPDATE queue.tasks t
         SET state = 'EXPIRED', completed_at = now(),
             error = jsonb_build_object('kind', 'expired', 'message',
                CASE WHEN t.state = 'STARTED'
                          AND t.started_at + make_interval(secs => t.started_to_completed_secs) < now()
                     THEN 'the task ran past its started-to-completed timeout'
                     WHEN t.state = 'STARTED'
                     THEN 'the runner stopped sending heartbeats'
                     ELSE 'the task was not started before its created-to-started timeout' END)
         WHERE t.state IN ('CREATED', 'DISPATCHED', 'STARTED')
           AND CASE t.state
                WHEN 'STARTED' THEN
                    t.last_heartbeat_at + make_interval(secs => t.heartbeat_timeout_secs) < now()
                    OR t.started_at + make_interval(secs => t.started_to_completed_secs) < now()
                ELSE t.created_at + make_interval(secs => t.created_to_started_secs) < now()
               END
         RETURNING ",
        columns!(),
        ""
    ))
    .fetch_all(db)
    .await?;
    Ok(rows)
}

/// STARTED → FAILED with the error and, when the task has attempts left, its next attempt
/// (CREATED, `retry_of` this one) in the same statement: whoever waits on the chain never sees
/// a failed attempt whose retry is not there yet. Returns the failed task's payload (`None`
/// when it was no longer STARTED), and the retry's id.
pub async fn fail_with_retry(
    db: &PgPool,
    id: Uuid,
    error: &Value,
) -> Result<(Option<Payload>, Option<Uuid>)> {
    let (payload, retry): (Option<Json<Payload>>, Option<Uuid>) = sqlx::query_as(
        "WITH failed AS (
            UPDATE queue.tasks SET state = 'FAILED', completed_at = now(), error = $2
            WHERE id = $1 AND state = 'STARTED'
            RETURNING *
         ), retry AS (
            INSERT INTO queue.tasks
                (id, environment_id, kind, group_key, name, payload, attempt, max_attempts,
                 retry_of, schedule_id, created_to_started_secs, started_to_completed_secs,
                 heartbeat_timeout_secs)
            SELECT $3, environment_id, kind, group_key, name, payload, attempt + 1, max_attempts,
                   id, schedule_id, created_to_started_secs, started_to_completed_secs,
                   heartbeat_timeout_secs
            FROM failed WHERE attempt < max_attempts
            ON CONFLICT DO NOTHING
            RETURNING id
         )
         SELECT (SELECT payload FROM failed), (SELECT id FROM retry)",
    )
    .bind(id)
    .bind(error)
    .bind(Uuid::now_v7())
    .fetch_one(db)
    .await?;
    Ok((payload.map(|p| p.0), retry))
}

/// The latest attempt of the retry chain that starts at `id`, in the environment: the task
/// itself when it was not retried. `None` when the environment has no task `id`.
pub async fn latest_attempt(
    db: &PgPool,
    environment_id: EnvironmentId,
    id: Uuid,
) -> Result<Option<Task>> {
    let row: Option<Task> = sqlx::query_as(concat!(
        "WITH RECURSIVE chain AS (
            SELECT id, 0 AS depth FROM queue.tasks WHERE id = $1 AND environment_id = $2
            UNION ALL
            SELECT t.id, chain.depth + 1 FROM queue.tasks t JOIN chain ON t.retry_of = chain.id
         )
         SELECT ",
        columns!(),
        " FROM chain JOIN queue.tasks t ON t.id = chain.id ORDER BY chain.depth DESC LIMIT 1"
    ))
    .bind(id)
    .bind(environment_id)
    .fetch_optional(db)
    .await?;
    Ok(row)
}

/// The first attempt of the retry chain `id` belongs to (the id its caller was given).
pub async fn first_attempt(db: &PgPool, id: Uuid) -> Result<Uuid> {
    Ok(sqlx::query_scalar(
        "WITH RECURSIVE chain AS (
            SELECT id, retry_of, 0 AS depth FROM queue.tasks WHERE id = $1
            UNION ALL
            SELECT t.id, t.retry_of, chain.depth + 1
            FROM queue.tasks t JOIN chain ON t.id = chain.retry_of
         )
         SELECT id FROM chain ORDER BY depth DESC LIMIT 1",
    )
    .bind(id)
    .fetch_optional(db)
    .await?
    .unwrap_or(id))
}

/// Sets [`FunctionPayload::async_caller`] on a task that has not finished yet; false when it
/// has. Finishing and flagging lock the same row, so the flag either lands before the task
/// finishes (and whoever finishes it reads it) or is refused.
pub async fn flag_async_caller(db: &PgPool, id: Uuid) -> Result<bool> {
    Ok(sqlx::query(
        "UPDATE queue.tasks SET payload = payload || jsonb_build_object($2::text, true)
         WHERE id = $1 AND state IN ('CREATED', 'DISPATCHED', 'STARTED')",
    )
    .bind(id)
    .bind(FunctionPayload::ASYNC_CALLER_KEY)
    .execute(db)
    .await?
    .rows_affected()
        == 1)
}

/// Creates the next attempt of each EXPIRED task among `expired` that has attempts left: same
/// payload, schedule and timeouts, `attempt + 1`, `retry_of` naming the expired one. A schedule
/// that already has another active task gets no retry. Returns the new tasks' ids.
pub async fn retry(db: &PgPool, expired: &[Uuid]) -> Result<Vec<Uuid>> {
    let ids: Vec<Uuid> = expired.iter().map(|_| Uuid::now_v7()).collect();
    Ok(sqlx::query_scalar(
        "INSERT INTO queue.tasks (id, environment_id, kind, group_key, name, payload, attempt,
            max_attempts, retry_of, schedule_id, created_to_started_secs,
            started_to_completed_secs, heartbeat_timeout_secs)
         SELECT n.id, t.environment_id, t.kind, t.group_key, t.name, t.payload, t.attempt + 1,
                t.max_attempts, t.id, t.schedule_id, t.created_to_started_secs,
                t.started_to_completed_secs, t.heartbeat_timeout_secs
         FROM UNNEST($1::uuid[], $2::uuid[]) AS n(id, expired)
         JOIN queue.tasks t ON t.id = n.expired
         WHERE t.state = 'EXPIRED' AND t.attempt < t.max_attempts
         ON CONFLICT (schedule_id)
            WHERE schedule_id IS NOT NULL AND state IN ('CREATED', 'DISPATCHED', 'STARTED')
            DO NOTHING
         RETURNING id",
    )
    .bind(&ids)
    .bind(expired)
    .fetch_all(db)
    .await?)
}

/// Cancels the active tasks of these schedules (CREATED, DISPATCHED or STARTED → CANCELLED).
/// A dispatched one is skipped by the runner that receives it; a running one stops at its
/// runner's next heartbeat. Returns the cancelled tasks' ids.
pub async fn cancel_for_schedules<'e>(
    db: impl PgExecutor<'e>,
    schedule_ids: &[Uuid],
    reason: &str,
) -> Result<Vec<Uuid>> {
    Ok(sqlx::query_scalar(
        "UPDATE queue.tasks SET state = 'CANCELLED', completed_at = now(),
            error = jsonb_build_object('kind', 'cancelled', 'message', $2::text)
         WHERE schedule_id = ANY($1) AND state IN ('CREATED', 'DISPATCHED', 'STARTED')
         RETURNING id",
    )
    .bind(schedule_ids)
    .bind(reason)
    .fetch_all(db)
    .await?)
}
