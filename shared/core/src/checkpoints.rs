//! Sync checkpoints: a small JSON document a script saves to resume where it stopped
//! (table `checkpoints`, owned here).

use serde_json::Value;
use sqlx::PgPool;

use crate::{ConnectionRowId, Result};

/// Largest checkpoint a script may save; it is a bookmark, not a data store.
pub const MAX_CHECKPOINT_BYTES: usize = 64 * 1024;

pub async fn get(
    db: &PgPool,
    connection: ConnectionRowId,
    function_name: &str,
) -> Result<Option<Value>> {
    let row: Option<(Value,)> = sqlx::query_as(
        "SELECT checkpoint FROM checkpoints WHERE connection_id = $1 AND function_name = $2",
    )
    .bind(connection)
    .bind(function_name)
    .fetch_optional(db)
    .await?;
    Ok(row.map(|(v,)| v))
}

pub async fn save(
    db: &PgPool,
    connection: ConnectionRowId,
    function_name: &str,
    checkpoint: &Value,
) -> Result<()> {
    let size = checkpoint.to_string().len();
    if size > MAX_CHECKPOINT_BYTES {
        return Err(crate::Error::invalid(
            "checkpoint",
            format!("is {size} bytes; a checkpoint may hold at most {MAX_CHECKPOINT_BYTES}"),
        ));
    }
    sqlx::query(
        "INSERT INTO checkpoints (connection_id, function_name, checkpoint) VALUES ($1, $2, $3)
         ON CONFLICT (connection_id, function_name)
         DO UPDATE SET checkpoint = EXCLUDED.checkpoint, updated_at = now()",
    )
    .bind(connection)
    .bind(function_name)
    .bind(checkpoint)
    .execute(db)
    .await?;
    Ok(())
}

/// Forgets the checkpoint (a sync triggered with reset).
pub async fn clear<'e>(
    db: impl sqlx::PgExecutor<'e>,
    connection: ConnectionRowId,
    function_name: &str,
) -> Result<()> {
    sqlx::query("DELETE FROM checkpoints WHERE connection_id = $1 AND function_name = $2")
        .bind(connection)
        .bind(function_name)
        .execute(db)
        .await?;
    Ok(())
}
