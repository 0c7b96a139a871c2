//! `lasso`: the Lasso command line.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use lasso_services::{config, db, environments};

#[derive(Parser)]
#[command(
    name = "lasso",
    version,
    about = "Lasso: self-hostable product integrations"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Apply the database migrations (creates the database if it does not exist).
    Migrate,
    /// Run the whole system in one process on local defaults: api, scheduler, dispatcher, runner.
    Dev {
        /// Where local state (secret key, encryption key, scripts) is kept.
        #[arg(long, default_value = ".lasso/dev", env = "LASSO_DEV_STATE_DIR")]
        state_dir: PathBuf,
    },
    /// Manage environments.
    #[command(subcommand)]
    Env(EnvCommand),
    /// Manage runner groups (runners isolated per customer).
    #[command(subcommand)]
    Group(GroupCommand),
    /// Manage the encryption key of stored secrets.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Compile a script project (nango.yaml and TypeScript) without deploying it.
    Compile {
        /// The project directory.
        #[arg(default_value = ".")]
        dir: PathBuf,
    },
    /// Compile a script project and deploy it: all of it or nothing. Functions deployed
    /// before and no longer in the project are removed.
    Deploy {
        /// The project directory.
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// Base URL of the Lasso api.
        #[arg(long, env = "LASSO_HOST", default_value = "http://127.0.0.1:3003")]
        host: String,
        /// The environment's secret key.
        #[arg(long, env = "LASSO_SECRET_KEY", hide_env_values = true)]
        secret_key: String,
        /// Deploy (and remove functions of) this integration only.
        #[arg(long)]
        integration: Option<String>,
    },
    /// Run a sync or action of a local project against a connection of a running Lasso, and
    /// print what it would save or return. Nothing is saved.
    Dryrun(DryRunArgs),
    /// Play AWS around functions served by `cargo lambda watch`: invoke the scheduler and the
    /// dispatcher on their schedules and bridge each runner group's SQS queue to its runner
    /// function, as Lambda's event source mapping does. Reads the functions' settings
    /// (LASSO_TASK_TRANSPORT=sqs, LASSO_RUNNER_QUEUES / LASSO_RUNNER_QUEUE_URL, AWS_ENDPOINT_URL).
    Emulate(EmulateArgs),
}

#[derive(clap::Args)]
struct EmulateArgs {
    /// Where `cargo lambda watch` serves the invoke API.
    #[arg(long, default_value = "http://127.0.0.1:9000")]
    endpoint: String,
    /// How often the scheduler is invoked (EventBridge: every minute).
    #[arg(long, default_value = "1m", value_parser = humantime::parse_duration)]
    scheduler_every: std::time::Duration,
    /// How often the dispatcher is invoked (EventBridge: every minute).
    #[arg(long, default_value = "1m", value_parser = humantime::parse_duration)]
    dispatcher_every: std::time::Duration,
    /// Another runner group's runner, served by its own `cargo lambda watch` (with its
    /// LASSO_RUNNER_GROUP): `group=http://127.0.0.1:9001`. Repeatable.
    #[arg(long = "runner", value_parser = parse_runner)]
    runners: Vec<(String, String)>,
    /// Messages per runner invocation (the event source mapping's batch size).
    #[arg(long, default_value_t = 10)]
    batch_size: usize,
    /// How long a received message stays invisible (the queue's visibility timeout).
    #[arg(long, default_value = "15m", value_parser = humantime::parse_duration)]
    visibility: std::time::Duration,
}

fn parse_runner(value: &str) -> Result<(String, String), String> {
    let (group, url) = value
        .split_once('=')
        .ok_or_else(|| format!("expected group=URL, got `{value}`"))?;
    if !lasso_services::runner_groups::valid_name(group) {
        return Err(format!(
            "group `{group}`: expected {}",
            lasso_services::runner_groups::NAME_RULE
        ));
    }
    url::Url::parse(url).map_err(|e| format!("`{url}` is not a URL: {e}"))?;
    Ok((group.to_string(), url.to_string()))
}

#[derive(clap::Args)]
struct DryRunArgs {
    /// The sync or action to run.
    function: String,
    /// The connection to run it for (its connection id).
    connection_id: String,
    /// The project directory.
    #[arg(long, default_value = ".")]
    dir: PathBuf,
    /// The integration, when several have a function of that name.
    #[arg(long)]
    integration: Option<String>,
    /// An action's input, as JSON.
    #[arg(long)]
    input: Option<String>,
    /// Base URL of the Lasso api.
    #[arg(long, env = "LASSO_HOST", default_value = "http://127.0.0.1:3003")]
    host: String,
    /// The environment's secret key.
    #[arg(long, env = "LASSO_SECRET_KEY", hide_env_values = true)]
    secret_key: String,
    /// Deadline of the run, in seconds.
    #[arg(long, default_value_t = 300)]
    timeout: u64,
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Re-seal every stored secret under LASSO_ENCRYPTION_KEY (the new key) that a key in
    /// LASSO_PREVIOUS_ENCRYPTION_KEYS sealed. Safe while Lasso runs (give its functions both
    /// settings first); if interrupted, run it again. Remove the previous keys once it reports
    /// nothing left to re-seal.
    Rotate,
}

#[derive(Subcommand)]
enum EnvCommand {
    /// Create an environment and print its secret key (shown once).
    Create { name: String },
    /// Run an environment's code on another runner group's runners.
    SetGroup { name: String, group: String },
}

#[derive(Subcommand)]
enum GroupCommand {
    /// Create (or give a new password to) the database user of a runner group's runners and
    /// print its password (shown once).
    CreateUser { group: String },
}

// QuickJS allocates small objects by the thousand per run; mimalloc serves them faster than
// the system allocator (measured by benches/sandbox.rs).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Migrate => {
            let url = config::database_url_from_env().unwrap_or_else(|e| config::exit_with(e));
            db::create_database_if_missing(&url).await?;
            db::migrate(&db::pool_for(&url, 1)?)
                .await
                .context("migrating the database")?;
            println!("migrations applied");
        }
        Command::Dev { state_dir } => {
            lasso_cli::dev::run(lasso_cli::dev::DevOptions { state_dir }).await?;
        }
        Command::Compile { dir } => {
            let project = lasso_cli::deploy::compile(&dir)?;
            for f in &project.functions {
                println!(
                    "{} {}/{} ({})",
                    f.function_type(),
                    f.integration,
                    f.name,
                    f.file
                );
            }
            println!("{} function(s) compiled", project.functions.len());
        }
        Command::Deploy {
            dir,
            host,
            secret_key,
            integration,
        } => {
            let project = lasso_cli::deploy::compile(&dir)?;
            let outcome =
                lasso_cli::deploy::deploy(project, &host, &secret_key, integration).await?;
            println!("{}", lasso_cli::deploy::describe(&outcome));
        }
        Command::Dryrun(args) => {
            let input = args
                .input
                .as_deref()
                .map(serde_json::from_str)
                .transpose()
                .context("--input is not valid JSON")?;
            let report = lasso_cli::dryrun::run(lasso_cli::dryrun::Options {
                dir: args.dir,
                function: args.function,
                connection_id: args.connection_id,
                integration: args.integration,
                input,
                host: args.host,
                secret_key: args.secret_key,
                limits: lasso_sandbox::Limits {
                    timeout: std::time::Duration::from_secs(args.timeout),
                    ..Default::default()
                },
            })
            .await?;
            lasso_cli::dryrun::print(&report);
            if matches!(report.output, Some(Err(_))) {
                std::process::exit(1);
            }
        }
        Command::Emulate(args) => {
            let config = config::from_env_or_exit();
            lasso_services::telemetry::init(config.log_format);
            let (stop, stopped) = tokio::sync::watch::channel(false);
            tokio::spawn(async move {
                let _ = tokio::signal::ctrl_c().await;
                let _ = stop.send(true);
            });
            println!("lasso emulate: invoking functions at {}", args.endpoint);
            lasso_cli::emulate::run(
                &config,
                &lasso_services::adapters::aws_sdk_config().await,
                lasso_cli::emulate::EmulateOptions {
                    endpoint: args.endpoint,
                    scheduler_every: args.scheduler_every,
                    dispatcher_every: args.dispatcher_every,
                    runners: args.runners.into_iter().collect(),
                    mapping: lasso_cli::event_source::Mapping {
                        batch_size: args.batch_size,
                        wait: std::time::Duration::from_secs(20),
                        visibility: args.visibility,
                        ..Default::default()
                    },
                },
                stopped,
            )
            .await?;
        }
        Command::Env(EnvCommand::SetGroup { name, group }) => {
            let url = config::database_url_from_env().unwrap_or_else(|e| config::exit_with(e));
            let pool = db::pool_for(&url, 1)?;
            let env = environments::find_by_name(&pool, &name)
                .await?
                .with_context(|| format!("no environment named `{name}`"))?;
            lasso_services::runner_groups::assign(&pool, env.id, &group).await?;
            println!("environment `{name}` now runs on runner group `{group}`");
        }
        Command::Group(GroupCommand::CreateUser { group }) => {
            let url = config::database_url_from_env().unwrap_or_else(|e| config::exit_with(e));
            let pool = db::pool_for(&url, 1)?;
            let password =
                lasso_services::runner_groups::create_database_user(&pool, &group).await?;
            println!(
                "database user: {}",
                lasso_services::runner_groups::database_user(&group)
            );
            println!(
                "password: {}",
                secrecy::ExposeSecret::expose_secret(&password)
            );
        }
        Command::Keys(KeysCommand::Rotate) => {
            let config = config::from_env_or_exit();
            if config.previous_encryption_keys.is_empty() {
                anyhow::bail!(
                    "LASSO_PREVIOUS_ENCRYPTION_KEYS is empty: set it to the old key(s) and \
                     LASSO_ENCRYPTION_KEY to the new one"
                );
            }
            let ctx = lasso_services::Context::from_config(config).await?;
            let done = lasso_services::keys::rotate(&ctx, None).await?;
            println!("re-sealed {} secret(s) under the new key", done.resealed);
            let again = lasso_services::keys::rotate(&ctx, None).await?;
            if again.resealed == 0 {
                println!(
                    "nothing is left under a previous key: LASSO_PREVIOUS_ENCRYPTION_KEYS can go"
                );
            } else {
                println!(
                    "{} more were written meanwhile; run it again",
                    again.resealed
                );
            }
        }
        Command::Env(EnvCommand::Create { name }) => {
            let url = config::database_url_from_env().unwrap_or_else(|e| config::exit_with(e));
            let pool = db::pool_for(&url, 1)?;
            let (env, key) = environments::create(&pool, &name).await?;
            println!("environment `{}` ({})", env.name, env.uuid);
            println!("secret key: {key}");
        }
    }
    Ok(())
}
