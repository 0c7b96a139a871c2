//! Locks scripts take (`nango.tryAcquireLock` / `releaseLock`, table `script_locks`, owned
//! here): one holder per key of an environment. A lock is held until its owner releases it,
//! the owner's run ends (the runner releases all its locks), or it expires; an expired lock is
//! free for anyone.

use crate::EnvironmentId;
use sqlx::PgPool;
use uuid::Uuid;

use crate::{Error, Result};

/// Longest key (Nango's limit).
pub const MAX_KEY_CHARS: usize = 255;

fn check_key(key: &str) -> Result<()> {
    if key.is_empty() || key.chars().count() > MAX_KEY_CHARS {
        return Err(Error::invalid(
            "key",
            format!("must be between 1 and {MAX_KEY_CHARS} characters"),
        ));
    }
    Ok(())
}

/// Takes the lock `key` for `owner` for `ttl_ms` milliseconds: true when it was free, expired,
/// or already `owner`'s (whose expiry then moves), false when someone else holds it.
pub async fn try_acquire(
    db: &PgPool,
    environment_id: EnvironmentId,
    key: &str,
    owner: Uuid,
    ttl_ms: i64,
) -> Result<bool> {
    check_key(key)?;
    if ttl_ms <= 0 {
        return Err(Error::invalid("ttlMs", "must be greater than 0"));
    }
    // One statement: two runs asking at once cannot both win.
    let acquired: Option<(i32,)> = sqlx::query_as(
        "INSERT INTO script_locks (environment_id, key, owner, expires_at)
         VALUES ($1, $2, $3, now() + $4 * interval '1 millisecond')
         ON CONFLICT (environment_id, key) DO UPDATE
         SET owner = EXCLUDED.owner, expires_at = EXCLUDED.expires_at
         WHERE script_locks.owner = EXCLUDED.owner OR script_locks.expires_at <= now()
         RETURNING 1",
    )
    .bind(environment_id)
    .bind(key)
    .bind(owner)
    .bind(ttl_ms as f64)
    .fetch_optional(db)
    .await?;
    Ok(acquired.is_some())
}

/// Releases `owner`'s lock `key`: false when `owner` does not hold it.
pub async fn release(
    db: &PgPool,
    environment_id: EnvironmentId,
    key: &str,
    owner: Uuid,
) -> Result<bool> {
    check_key(key)?;
    let released = sqlx::query(
        "DELETE FROM script_locks WHERE environment_id = $1 AND key = $2 AND owner = $3",
    )
    .bind(environment_id)
    .bind(key)
    .bind(owner)
    .execute(db)
    .await?
    .rows_affected();
    Ok(released > 0)
}

/// Releases every lock `owner` holds (its run ended).
pub async fn release_all(db: &PgPool, owner: Uuid) -> Result<u64> {
    Ok(sqlx::query("DELETE FROM script_locks WHERE owner = $1")
        .bind(owner)
        .execute(db)
        .await?
        .rows_affected())
}
