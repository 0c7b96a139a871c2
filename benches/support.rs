//! What the benches that run Lasso itself share: a `Context` on a fresh, migrated database of
//! the bench's Postgres server, and the latency percentile they report.

// Each bench includes this file as its own module and uses a part of it.
#![allow(dead_code)]

use std::time::Duration;

use lasso_services::Context;
use lasso_services::config::Config;
use secrecy::SecretString;

pub const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

/// `LASSO_BENCH_DATABASE_URL`: the server the benches create their databases on.
pub fn admin_url() -> anyhow::Result<String> {
    std::env::var("LASSO_BENCH_DATABASE_URL")
        .map_err(|_| anyhow::anyhow!("LASSO_BENCH_DATABASE_URL is not set (scripts/bench sets it)"))
}

/// A new, empty database on `admin`'s server; its URL.
pub async fn fresh_database(admin: &str) -> anyhow::Result<String> {
    let mut url = url::Url::parse(admin)?;
    url.set_path(&format!("lasso_bench_{}", uuid::Uuid::new_v4().simple()));
    lasso_services::db::create_database_if_missing(&SecretString::from(url.to_string())).await?;
    Ok(url.to_string())
}

/// A Lasso on a fresh, migrated database: scripts (and `providers`, when given, as the extra
/// provider catalog) in a temporary directory that lives as long as the returned guard;
/// `extra` settings on top of the required ones.
pub async fn lasso(
    admin: &str,
    providers: Option<&str>,
    extra: &[(&'static str, String)],
) -> anyhow::Result<(Context, tempfile::TempDir)> {
    let dir = tempfile::Builder::new().prefix("lasso-bench-").tempdir()?;
    let mut settings = vec![
        ("LASSO_DATABASE_URL", fresh_database(admin).await?),
        ("LASSO_ENCRYPTION_KEY", KEY.to_string()),
        (
            "LASSO_SCRIPT_STORE",
            dir.path().join("scripts").display().to_string(),
        ),
    ];
    if let Some(providers) = providers {
        let file = dir.path().join("providers.yaml");
        std::fs::write(&file, providers)?;
        settings.push(("LASSO_PROVIDERS_FILE", file.display().to_string()));
    }
    settings.extend(extra.iter().cloned());
    let config = Config::from_lookup(|name| {
        settings
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.clone())
    })?;
    let ctx = Context::build(config, None)?;
    lasso_services::db::migrate(&ctx.db).await?;
    Ok((ctx, dir))
}

/// The `q` quantile of samples sorted ascending (nearest rank).
pub fn quantile(sorted: &[Duration], q: f64) -> Duration {
    sorted[((sorted.len() as f64 * q).ceil() as usize).saturating_sub(1)]
}
