//! The Postgres pool and the migrations (the only schema source).

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use secrecy::{ExposeSecret, SecretString};
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::Result;
use crate::config::Config;

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations");

/// A pooled connection idle for longer than this is pinged before use; one used more recently
/// is trusted, which spares the hot paths a round trip per query.
const PING_IF_IDLE_FOR: Duration = Duration::from_secs(10);

/// When this process last saw a connection fail (milliseconds since [`since`]'s start; 0:
/// never). A database that restarted drops every connection at once, but an idle pooled one only
/// finds out on its next query: after one failure, connections released before it are pinged
/// before use, so the rest of a dead pool fails no other query.
static LAST_CONNECTION_FAILURE: AtomicU64 = AtomicU64::new(0);

/// Milliseconds since the process's first call (1 at the earliest, so 0 can mean "never").
fn since(at: Instant) -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    let start = *START.get_or_init(|| at);
    at.saturating_duration_since(start).as_millis() as u64 + 1
}

/// Notes `e` when it says the connection (not the query) failed: the socket, the protocol, or
/// the server shutting down or crashing (SQLSTATE class 57P).
pub fn note_error(e: &sqlx::Error) {
    let lost = match e {
        sqlx::Error::Io(_) | sqlx::Error::Protocol(_) | sqlx::Error::Tls(_) => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|c| c.starts_with("57P")),
        _ => false,
    };
    if lost {
        LAST_CONNECTION_FAILURE.fetch_max(since(Instant::now()), Ordering::Relaxed);
    }
}

/// Whether a connection idle for `idle_for` was released before the last connection failure.
fn released_before_a_failure(idle_for: Duration) -> bool {
    let failed = LAST_CONNECTION_FAILURE.load(Ordering::Relaxed);
    let now = Instant::now();
    failed != 0 && since(now.checked_sub(idle_for).unwrap_or(now)) <= failed
}

/// Builds the pool once per process. Connections are opened lazily and idle ones are closed
/// quickly, so a frozen Lambda does not pin database connections.
pub fn pool(config: &Config) -> Result<PgPool> {
    pool_for(&config.database_url, config.db_max_connections)
}

pub fn pool_for(url: &SecretString, max_connections: u32) -> Result<PgPool> {
    let options: PgConnectOptions = url
        .expose_secret()
        .parse()
        .map_err(|_| crate::Error::invalid("LASSO_DATABASE_URL", "not a valid Postgres URL"))?;
    Ok(PgPoolOptions::new()
        .max_connections(max_connections)
        .min_connections(0)
        .acquire_timeout(Duration::from_secs(10))
        .idle_timeout(Duration::from_secs(60))
        // A connection that sat idle (say, in a frozen Lambda) may have been dropped by the
        // server or a proxy, and one released before another failed was likely dropped with
        // it (a restart): check those, and only those, before handing them out.
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for > PING_IF_IDLE_FOR || released_before_a_failure(meta.idle_for) {
                    sqlx::Connection::ping(conn).await?;
                }
                Ok(true)
            })
        })
        .connect_lazy_with(options.application_name("lasso")))
}

/// Creates the database named in `url` when it does not exist yet (first `lasso dev`).
pub async fn create_database_if_missing(url: &SecretString) -> Result<()> {
    use sqlx::migrate::MigrateDatabase;
    if !sqlx::Postgres::database_exists(url.expose_secret()).await? {
        sqlx::Postgres::create_database(url.expose_secret()).await?;
    }
    Ok(())
}

pub async fn migrate(pool: &PgPool) -> Result<()> {
    MIGRATOR.run(pool).await?;
    Ok(())
}

/// One round trip, for health checks; gives up after 3 s so a probe gets an answer.
pub async fn ping(pool: &PgPool) -> Result<()> {
    tokio::time::timeout(
        Duration::from_secs(3),
        sqlx::query("SELECT 1").execute(pool),
    )
    .await
    .map_err(|_| crate::Error::Database(sqlx::Error::PoolTimedOut))??;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lost_connection_marks_the_connections_released_before_it() {
        note_error(&sqlx::Error::RowNotFound);
        assert!(
            !released_before_a_failure(Duration::from_secs(3600)),
            "a query error says nothing of the connection"
        );
        note_error(&sqlx::Error::Io(std::io::Error::from(
            std::io::ErrorKind::UnexpectedEof,
        )));
        std::thread::sleep(Duration::from_millis(5));
        assert!(released_before_a_failure(Duration::from_secs(3600)));
        assert!(!released_before_a_failure(Duration::ZERO));
    }
}
