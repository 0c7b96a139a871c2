//! Browser sessions of the web UI (table `web_sessions`, owned here). A session belongs to one
//! environment; the cookie holds a random token of which only the digest is stored, so a
//! database dump opens no session. Each session has its own CSRF token.

use crate::EnvironmentId;
use chrono::{DateTime, Duration, Utc};
use sqlx::PgPool;

use crate::Result;
use crate::crypto::{random_token, token_digest};
use crate::environments::Environment;

#[derive(Debug, Clone)]
pub struct WebSession {
    pub environment: Environment,
    pub csrf_token: String,
    pub expires_at: DateTime<Utc>,
    token_hash: Vec<u8>,
}

#[derive(sqlx::FromRow)]
struct Row {
    id: EnvironmentId,
    uuid: uuid::Uuid,
    name: String,
    csrf_token: String,
    expires_at: DateTime<Utc>,
}

/// Starts a session of `lifetime` for the environment; returns the token for the cookie.
/// Expired sessions are swept on the way, so the table holds only live ones.
pub async fn create(
    db: &PgPool,
    environment_id: EnvironmentId,
    lifetime: Duration,
) -> Result<String> {
    let token = random_token("");
    sqlx::query(
        "WITH swept AS (DELETE FROM web_sessions WHERE expires_at <= now())
         INSERT INTO web_sessions (token_hash, environment_id, csrf_token, expires_at)
         VALUES ($1, $2, $3, $4)",
    )
    .bind(token_digest(&token))
    .bind(environment_id)
    .bind(random_token(""))
    .bind(Utc::now() + lifetime)
    .execute(db)
    .await?;
    Ok(token)
}

/// The live session of a cookie token, if any.
pub async fn find(db: &PgPool, token: &str) -> Result<Option<WebSession>> {
    let hash = token_digest(token);
    let row: Option<Row> = sqlx::query_as(
        "SELECT e.id, e.uuid, e.name, s.csrf_token, s.expires_at
         FROM web_sessions s JOIN environments e ON e.id = s.environment_id
         WHERE s.token_hash = $1 AND s.expires_at > now()",
    )
    .bind(&hash)
    .fetch_optional(db)
    .await?;
    Ok(row.map(|r| WebSession {
        environment: Environment {
            id: r.id,
            uuid: r.uuid,
            name: r.name,
        },
        csrf_token: r.csrf_token,
        expires_at: r.expires_at,
        token_hash: hash,
    }))
}

/// Ends the session (sign out).
pub async fn end(db: &PgPool, session: &WebSession) -> Result<()> {
    sqlx::query("DELETE FROM web_sessions WHERE token_hash = $1")
        .bind(&session.token_hash)
        .execute(db)
        .await?;
    Ok(())
}
