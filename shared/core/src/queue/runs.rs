//! The runs of one sync schedule, newest first, for the dashboard's history and charts.

use crate::EnvironmentId;
use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

use crate::Result;
use crate::queue::tasks::TaskState;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Run {
    pub id: Uuid,
    pub state: TaskState,
    pub attempt: i32,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub output: Option<Value>,
    pub error: Option<Value>,
}

impl Run {
    /// Records the run added, updated and deleted, over all its models.
    pub fn changed(&self) -> (i64, i64, i64) {
        let results = self.output.as_ref().and_then(|o| o.get("results"));
        let Some(Value::Object(models)) = results else {
            return (0, 0, 0);
        };
        models.values().fold((0, 0, 0), |(a, u, d), m| {
            let n = |k: &str| m.get(k).and_then(Value::as_i64).unwrap_or(0);
            (a + n("added"), u + n("updated"), d + n("deleted"))
        })
    }

    /// What failed, in the error's own words.
    pub fn error_message(&self) -> Option<&str> {
        self.error.as_ref()?.get("message")?.as_str()
    }
}

/// The latest `limit` runs of the environment's schedule `schedule_id`, newest first.
pub async fn list(
    db: &PgPool,
    environment_id: EnvironmentId,
    schedule_id: Uuid,
    limit: i64,
) -> Result<Vec<Run>> {
    Ok(sqlx::query_as(
        "SELECT id, state, attempt, created_at, started_at, completed_at,
                output, error
         FROM queue.tasks
         WHERE environment_id = $1 AND schedule_id = $2
         ORDER BY created_at DESC, id DESC
         LIMIT $3",
    )
    .bind(environment_id)
    .bind(schedule_id)
    .bind(limit)
    .fetch_all(db)
    .await?)
}

/// Tasks of an environment that ended in one minute.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Minute {
    pub minute: DateTime<Utc>,
    pub succeeded: i64,
    pub failed: i64,
}

/// Tasks of the environment (every kind) that ended in each of the last `minutes` minutes,
/// oldest first; minutes without any are included, with zeros.
pub async fn per_minute(
    db: &PgPool,
    environment_id: EnvironmentId,
    minutes: i32,
) -> Result<Vec<Minute>> {
    Ok(sqlx::query_as(
        "WITH slots AS (
            SELECT generate_series(date_trunc('minute', now()) - make_interval(mins => $2 - 1),
                                   date_trunc('minute', now()), interval '1 minute') AS minute
         ), ended AS (
            SELECT date_trunc('minute', completed_at) AS minute,
                   count(*) FILTER (WHERE state = 'SUCCEEDED') AS succeeded,
                   count(*) FILTER (WHERE state <> 'SUCCEEDED') AS failed
            FROM queue.tasks
            WHERE environment_id = $1
              AND created_at > now() - make_interval(mins => $2 + 60)
              AND completed_at >= date_trunc('minute', now()) - make_interval(mins => $2 - 1)
            GROUP BY 1
         )
         SELECT s.minute, coalesce(e.succeeded, 0) AS succeeded, coalesce(e.failed, 0) AS failed
         FROM slots s LEFT JOIN ended e USING (minute)
         ORDER BY s.minute",
    )
    .bind(environment_id)
    .bind(minutes)
    .fetch_all(db)
    .await?)
}

/// The environment's tasks waiting or running now, per state (`CREATED`, `DISPATCHED`,
/// `STARTED`), every state present.
pub async fn depth(db: &PgPool, environment_id: EnvironmentId) -> Result<Vec<(String, i64)>> {
    Ok(sqlx::query_as(
        "SELECT s.state, count(t.id)
         FROM unnest(ARRAY['CREATED', 'DISPATCHED', 'STARTED']) AS s(state)
         LEFT JOIN queue.tasks t
                ON t.environment_id = $1 AND t.state::text = s.state
               AND t.state IN ('CREATED', 'DISPATCHED', 'STARTED')
         GROUP BY s.state
         ORDER BY array_position(ARRAY['CREATED', 'DISPATCHED', 'STARTED'], s.state)",
    )
    .bind(environment_id)
    .fetch_all(db)
    .await?)
}
