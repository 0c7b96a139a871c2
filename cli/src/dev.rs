//! `lasso dev`: migrate, make sure a default environment exists, and serve the api plus the
//! scheduler, dispatcher and runner loops in one process on local defaults.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use base64::Engine;
use lasso_services::config::{self, Config};
use lasso_services::{Context, db, environments};
use rand::RngCore;

use crate::workers::Workers;

pub const DEFAULT_ENVIRONMENT: &str = "dev";

/// Outbound-policy exceptions `lasso dev` starts with when `LASSO_OUTBOUND_ALLOW` is not set:
/// loopback, so scripts and the proxy can reach providers faked on this machine. Deployed
/// functions have none unless the operator lists some.
pub const DEV_OUTBOUND_ALLOW: &str = "127.0.0.0/8,::1/128";

/// Local defaults for settings the user did not give: a script directory and an encryption
/// key kept in `state_dir`, text logs, loopback allowed by the outbound policy.
pub fn dev_config(state_dir: &Path) -> anyhow::Result<Config> {
    let mut defaults: HashMap<&str, String> = HashMap::new();
    defaults.insert(
        "LASSO_SCRIPT_STORE",
        state_dir.join("scripts").display().to_string(),
    );
    defaults.insert("LASSO_LOG_FORMAT", "text".into());
    defaults.insert("LASSO_OUTBOUND_ALLOW", DEV_OUTBOUND_ALLOW.into());
    if std::env::var("LASSO_ENCRYPTION_KEY").is_err() {
        defaults.insert(
            "LASSO_ENCRYPTION_KEY",
            read_or_create(&state_dir.join("encryption-key"), || {
                let mut key = [0u8; 32];
                rand::rng().fill_bytes(&mut key);
                Ok(base64::engine::general_purpose::STANDARD.encode(key))
            })?,
        );
    }
    Config::from_lookup(|name| {
        std::env::var(name)
            .ok()
            .filter(|v| !v.is_empty())
            .or_else(|| defaults.get(name).cloned())
    })
    .map_err(|e| config::exit_with(e))
}

/// Reads a one-line secret file, creating it (mode 0600) with `make` when missing.
fn read_or_create(
    path: &Path,
    make: impl FnOnce() -> anyhow::Result<String>,
) -> anyhow::Result<String> {
    if let Ok(existing) = std::fs::read_to_string(path) {
        let existing = existing.trim().to_string();
        if !existing.is_empty() {
            return Ok(existing);
        }
    }
    let value = make()?;
    write_secret(path, &value)?;
    Ok(value)
}

fn write_secret(path: &Path, value: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    writeln!(file, "{value}")?;
    Ok(())
}

/// The default environment's secret key: the stored one while it still works, otherwise a new
/// key (for a new or existing `dev` environment), stored for later runs.
pub async fn ensure_default_environment(ctx: &Context, key_file: &Path) -> anyhow::Result<String> {
    if let Ok(stored) = std::fs::read_to_string(key_file) {
        let stored = stored.trim();
        if environments::find_by_secret_key(&ctx.db, stored)
            .await?
            .is_some()
        {
            return Ok(stored.to_string());
        }
    }
    let key = match environments::find_by_name(&ctx.db, DEFAULT_ENVIRONMENT).await? {
        Some(env) => environments::add_key(&ctx.db, env.id).await?,
        None => environments::create(&ctx.db, DEFAULT_ENVIRONMENT).await?.1,
    };
    write_secret(key_file, &key)?;
    Ok(key)
}

pub struct DevOptions {
    pub state_dir: PathBuf,
}

pub async fn run(options: DevOptions) -> anyhow::Result<()> {
    let config = dev_config(&options.state_dir)?;
    lasso_services::telemetry::init(config.log_format);
    let addr = config.listen_addr;
    let public_url = config.public_url.clone();
    let ctx = Context::from_config(config).await?;
    db::create_database_if_missing(&ctx.config.database_url).await?;
    db::migrate(&ctx.db)
        .await
        .context("migrating the database")?;
    let key = ensure_default_environment(&ctx, &options.state_dir.join("secret-key")).await?;

    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("listening on {addr}"))?;
    println!("Lasso is running at {public_url}");
    println!("Dashboard: {public_url}/ui/ (sign in with the secret key below)");
    println!(
        "Connect UI: {public_url}/connect-ui/ (openConnectUI's baseURL; a session's connect_link opens it)"
    );
    println!("Secret key of environment `{DEFAULT_ENVIRONMENT}`: {key}");
    let allowed: Vec<String> = ctx
        .outbound
        .exceptions()
        .iter()
        .map(ToString::to_string)
        .collect();
    if !allowed.is_empty() {
        println!(
            "Requests made for tenants may reach {} (LASSO_OUTBOUND_ALLOW; deployed functions allow none by default).",
            allowed.join(", ")
        );
    }
    println!("Press Ctrl-C to stop.");

    let workers = Workers::start(ctx.clone());
    axum::serve(listener, lasso_api::router(ctx))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    println!("Stopping...");
    workers.stop().await;
    Ok(())
}
