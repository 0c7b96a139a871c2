//! The runs of one sync schedule, newest first, for the dashboard's history and charts.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

use crate::Result;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Run {
    pub id: Uuid,
    /// The task state, as stored (`SUCCEEDED`, `FAILED`, ...).
    pub state: String,
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
    environment_id: i64,
    schedule_id: Uuid,
    limit: i64,
) -> Result<Vec<Run>> {
    Ok(sqlx::query_as(
        "SELECT id, state::text AS state, attempt, created_at, started_at, completed_at,
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
