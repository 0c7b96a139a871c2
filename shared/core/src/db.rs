//! The Postgres pool and the migrations (the only schema source).

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::Result;
use crate::config::Config;

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations");

/// A pooled connection idle for longer than this is pinged before use; one used more recently
/// is trusted, which spares the hot paths a round trip per query.
const PING_IF_IDLE_FOR: Duration = Duration::from_secs(10);

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
        // server or a proxy: check those, and only those, before handing them out.
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for > PING_IF_IDLE_FOR {
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
