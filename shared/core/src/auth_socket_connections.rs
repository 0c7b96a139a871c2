//! The frontend SDK's auth sockets that API Gateway's WebSocket API holds (table
//! `auth_socket_connections`, owned here): which API Gateway connection a `ws_client_id` names,
//! so that whichever api instance finishes an OAuth flow can post the outcome to its socket.

use sqlx::PgPool;

use crate::Result;

/// API Gateway closes a WebSocket connection after two hours whatever happens; a row older
/// than that lost its `$disconnect` and is swept.
const MAX_AGE_SECS: i64 = 2 * 60 * 60;

/// Records a new connection under its client id; rows past [`MAX_AGE_SECS`] go on the way.
pub async fn open(db: &PgPool, ws_client_id: &str, connection_id: &str) -> Result<()> {
    sqlx::query(
        "WITH swept AS (
             DELETE FROM auth_socket_connections
             WHERE created_at < now() - make_interval(secs => $3)
         )
         INSERT INTO auth_socket_connections (ws_client_id, connection_id) VALUES ($1, $2)",
    )
    .bind(ws_client_id)
    .bind(connection_id)
    .bind(MAX_AGE_SECS as f64)
    .execute(db)
    .await?;
    Ok(())
}

/// The client id of an open connection.
pub async fn client_of(db: &PgPool, connection_id: &str) -> Result<Option<String>> {
    Ok(sqlx::query_scalar(
        "SELECT ws_client_id FROM auth_socket_connections WHERE connection_id = $1",
    )
    .bind(connection_id)
    .fetch_optional(db)
    .await?)
}

/// The connection a client id names, if it is open.
pub async fn connection_of(db: &PgPool, ws_client_id: &str) -> Result<Option<String>> {
    Ok(sqlx::query_scalar(
        "SELECT connection_id FROM auth_socket_connections WHERE ws_client_id = $1",
    )
    .bind(ws_client_id)
    .fetch_optional(db)
    .await?)
}

/// Forgets a connection that closed (or that API Gateway says is gone).
pub async fn close(db: &PgPool, connection_id: &str) -> Result<()> {
    sqlx::query("DELETE FROM auth_socket_connections WHERE connection_id = $1")
        .bind(connection_id)
        .execute(db)
        .await?;
    Ok(())
}
