//! Typed configuration, read once from the environment at start-up.
//!
//! Every setting is declared once in [`SETTINGS`], default included: the parser reads the
//! default from there and the README's table is checked against it. A missing or malformed
//! value stops start-up with one line naming the variable and what it expects. Secrets are
//! wrapped so that `Debug` never prints them.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use base64::Engine;

use crate::crypto::EncryptionKey;
use secrecy::SecretString;

/// One documented setting.
pub struct Setting {
    pub name: &'static str,
    pub default: Option<&'static str>,
    pub description: &'static str,
}

pub const SETTINGS: &[Setting] = &[
    Setting {
        name: "LASSO_DATABASE_URL",
        default: None,
        description: "Postgres connection URL (`postgres://user:pass@host:port/db`). Secret.",
    },
    Setting {
        name: "LASSO_DB_MAX_CONNECTIONS",
        default: Some("5"),
        description: "Pool size per process. Keep it small on Lambda.",
    },
    Setting {
        name: "LASSO_ENCRYPTION_KEY",
        default: None,
        description: "Base64 of 32 random bytes (`openssl rand -base64 32`); encrypts credentials at rest. Secret.",
    },
    Setting {
        name: "LASSO_SCRIPT_STORE",
        default: None,
        description: "Where script bundles live: `s3://bucket[/prefix]` or a directory (`file:///abs/path` or a plain path).",
    },
    Setting {
        name: "LASSO_TASK_TRANSPORT",
        default: Some("local"),
        description: "How the dispatcher hands tasks to runners: `sqs` (needs LASSO_RUNNER_QUEUE_URL) or `local` (in-process, `lasso dev`).",
    },
    Setting {
        name: "LASSO_RUNNER_QUEUE_URL",
        default: None,
        description: "SQS queue URL of this process's runner group (LASSO_RUNNER_GROUP); with LASSO_TASK_TRANSPORT=sqs, this or that group's entry in LASSO_RUNNER_QUEUES is required.",
    },
    Setting {
        name: "LASSO_RUNNER_QUEUES",
        default: None,
        description: "JSON object of every runner group's SQS queue URL by group name, e.g. `{\"shared\":\"https://sqs…/lasso-runner\"}`; the api, scheduler and dispatcher send each task to its environment's group (LASSO_TASK_TRANSPORT=sqs).",
    },
    Setting {
        name: "LASSO_RUNNER_GROUP",
        default: Some("shared"),
        description: "The runner group this process's runner serves: it refuses tasks of environments mapped to another group (`lasso env set-group`).",
    },
    Setting {
        name: "LASSO_ENVIRONMENT_CONCURRENCY",
        default: Some("20"),
        description: "Most tasks of one environment dispatched or running at once; ready tasks beyond it wait in the queue.",
    },
    Setting {
        name: "LASSO_REDISPATCH_AFTER_SECS",
        default: Some("60"),
        description: "Seconds a task may stay dispatched but not started before the dispatcher sends it again (its message may be lost); a duplicate runs nothing.",
    },
    Setting {
        name: "LASSO_LOG_SINK",
        default: Some("postgres"),
        description: "Where operation logs go: `postgres` or `opensearch` (needs LASSO_OPENSEARCH_URL).",
    },
    Setting {
        name: "LASSO_OPENSEARCH_URL",
        default: None,
        description: "OpenSearch / Elasticsearch base URL; required when LASSO_LOG_SINK=opensearch.",
    },
    Setting {
        name: "LASSO_OPENSEARCH_AUTH",
        default: Some("none"),
        description: "`none` or `sigv4` (Amazon OpenSearch Service, signed with the function's AWS credentials).",
    },
    Setting {
        name: "LASSO_OPENSEARCH_INDEX_PREFIX",
        default: Some("lasso"),
        description: "Prefix of the log indices (`<prefix>-operations-YYYY.MM`, `<prefix>-messages-YYYY.MM`).",
    },
    Setting {
        name: "LASSO_LISTEN_ADDR",
        default: Some("127.0.0.1:3003"),
        description: "Address the api listens on outside Lambda (`lasso dev`).",
    },
    Setting {
        name: "LASSO_PUBLIC_URL",
        default: Some("http://<LASSO_LISTEN_ADDR>"),
        description: "Public base URL of the api, used to build OAuth callback and status URLs.",
    },
    Setting {
        name: "LASSO_SCRIPT_MEMORY_MB",
        default: Some("64"),
        description: "Memory limit of one script run, in MiB: the script's own values and what the runner holds for it (provider answers being read, JSON on its way into or out of the sandbox, records being saved) together.",
    },
    Setting {
        name: "LASSO_SCRIPT_TIMEOUT_SECS",
        default: Some("300"),
        description: "Deadline of one script run, in seconds.",
    },
    Setting {
        name: "LASSO_SCRIPT_MAX_CONCURRENT_CALLS",
        default: Some("16"),
        description: "Most `nango` calls that reach the runner (proxy, records, metadata, …) one script run may have in flight at once; one more is a script error naming this setting.",
    },
    Setting {
        name: "LASSO_SCRIPT_RESPONSE_MB",
        default: Some("16"),
        description: "Largest provider answer one proxy call of a script may read, in MiB; a larger one is a script error naming this setting.",
    },
    Setting {
        name: "LASSO_SCRIPT_LOG_MB",
        default: Some("8"),
        description: "Most log text one script run may write, in MiB (each line is cut at 64 KiB); the line past it is a script error naming this setting.",
    },
    Setting {
        name: "LASSO_ACTION_WAIT",
        default: Some("listen"),
        description: "How a synchronous action call learns that its task finished: `listen` (Postgres LISTEN/NOTIFY on one session connection per api process) or `poll` (re-read with backoff; for a pooler in transaction mode, such as RDS Proxy, where LISTEN does not work).",
    },
    Setting {
        name: "LASSO_ACTION_WAIT_SECS",
        default: Some("25"),
        description: "How long a synchronous action call waits for its result before answering 202 with its async id and status URL (API Gateway ends requests at 30 s).",
    },
    Setting {
        name: "LASSO_HEARTBEAT_SECS",
        default: Some("10"),
        description: "How often a runner tells the queue a task is alive, in seconds (1-60); a paused sync's run stops at its next heartbeat.",
    },
    Setting {
        name: "LASSO_PROVIDERS_FILE",
        default: None,
        description: "Path to an extra provider catalog in Nango's `providers.yaml` format, loaded over the builtin one (its entries win). A bad file stops start-up.",
    },
    Setting {
        name: "LASSO_OUTBOUND_ALLOW",
        default: None,
        description: "Comma-separated CIDRs that requests made for tenants (proxy, token and refresh calls, credential checks, webhooks, `uncontrolledFetch`) may reach although the outbound policy refuses them: loopback, private, link-local (instance metadata), unique-local, CGNAT, IPv4-mapped IPv6 and other special-purpose addresses, e.g. `10.20.0.0/16`. Unset: none (deployed functions). `lasso dev` defaults to `127.0.0.0/8,::1/128` and says so at start-up.",
    },
    Setting {
        name: "LASSO_OUTBOUND_ONLY",
        default: None,
        description: "Comma-separated CIDRs that confine requests made for tenants: any address outside them is refused, and host names other than `localhost` are refused without being resolved (the special-purpose refusals still apply, so loopback also needs `LASSO_OUTBOUND_ALLOW`). For test runs that must not reach any other host, e.g. `127.0.0.0/8` while the API is fuzzed. Unset: not confined.",
    },
    Setting {
        name: "LASSO_PREVIOUS_ENCRYPTION_KEYS",
        default: None,
        description: "Comma-separated encryption keys that still decrypt, while `lasso keys rotate` re-seals every stored secret under `LASSO_ENCRYPTION_KEY`; remove them once it reports nothing left. Secret.",
    },
    Setting {
        name: "LASSO_LOG_FLUSH_MS",
        default: None,
        description: "Operation logs are written in the background, so a slow log store never holds up a request. When set, each request (and Lambda invocation) then waits at most this long for them before it returns, counting what it leaves unwritten. Unset: 300 on Lambda (a frozen function sends nothing), none elsewhere (`lasso dev`).",
    },
    Setting {
        name: "LASSO_AUTH_SOCKET_ENDPOINT",
        default: None,
        description: "The connection endpoint of the API Gateway WebSocket API that holds the frontend SDK's auth sockets on AWS (`https://<api-id>.execute-api.<region>.amazonaws.com/<stage>`, the stack sets it): the api then handles that API's `$connect`/`$disconnect`/`$default` events and posts each flow's outcome to its socket, from any instance. Unset: only sockets held by the process itself (`lasso dev` serves them at `/`).",
    },
    Setting {
        name: "LASSO_AUTH_SOCKET_ACK_FUNCTION",
        default: None,
        description: "The Lambda function invoked asynchronously on `$connect` to send the new socket its `connection_ack` once the connection is open (API Gateway refuses posts while `$connect` runs). Unset: the function itself (`AWS_LAMBDA_FUNCTION_NAME`); required with LASSO_AUTH_SOCKET_ENDPOINT outside Lambda.",
    },
    Setting {
        name: "LASSO_LOG_FORMAT",
        default: Some("json"),
        description: "Process log format: `json` (CloudWatch) or `text`.",
    },
    Setting {
        name: "RUST_LOG",
        default: Some("info"),
        description: "Process log filter (tracing `EnvFilter` syntax).",
    },
    Setting {
        name: "AWS_ENDPOINT_URL",
        default: None,
        description: "Standard AWS SDK setting; point S3 and SQS at another endpoint (moto in tests). `AWS_REGION` and the usual credential variables apply too.",
    },
];

/// A setting's declared default, for the code that applies it outside [`Config`] (`RUST_LOG`).
///
/// # Panics
/// When `name` is not declared in [`SETTINGS`] or has no default: a programming error that
/// the config tests catch.
pub fn default_of(name: &str) -> &'static str {
    SETTINGS
        .iter()
        .find(|s| s.name == name)
        .and_then(|s| s.default)
        .unwrap_or_else(|| panic!("{name} has no default declared in SETTINGS"))
}

/// A setting that is missing or malformed. Displays as one line naming the variable.
#[derive(Debug, thiserror::Error)]
#[error("configuration error: {var}: {problem}")]
pub struct ConfigError {
    pub var: &'static str,
    pub problem: String,
}

impl ConfigError {
    fn new(var: &'static str, problem: impl Into<String>) -> Self {
        Self {
            var,
            problem: problem.into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScriptStoreConfig {
    S3 { bucket: String, prefix: String },
    Dir(PathBuf),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransportConfig {
    Local,
    Sqs {
        /// The queue of this process's own group.
        queue_url: String,
        /// Every group's queue by group name, the own group's included.
        queues: BTreeMap<String, String>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenSearchAuth {
    None,
    SigV4,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogSinkConfig {
    Postgres,
    OpenSearch {
        url: String,
        auth: OpenSearchAuth,
        index_prefix: String,
    },
}

/// How a synchronous action call waits for its task (`LASSO_ACTION_WAIT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActionWait {
    Listen,
    Poll,
}

/// API Gateway's WebSocket API for the frontend SDK's auth sockets (`LASSO_AUTH_SOCKET_*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthSocketConfig {
    /// Where the Management API posts to connections: the API's https URL with its stage.
    pub endpoint: String,
    /// The function whose asynchronous invocation sends a new socket its ack.
    pub ack_function: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Text,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub database_url: SecretString,
    pub db_max_connections: u32,
    pub encryption_key: EncryptionKey,
    /// Keys that still decrypt (`LASSO_PREVIOUS_ENCRYPTION_KEYS`), while `lasso keys rotate`
    /// re-seals what they sealed.
    pub previous_encryption_keys: Vec<EncryptionKey>,
    pub script_store: ScriptStoreConfig,
    pub transport: TransportConfig,
    /// The runner group whose tasks this process's runner runs.
    pub runner_group: String,
    /// Most tasks of one group (an environment by default) dispatched or started at once.
    pub environment_concurrency: u32,
    /// How long a task may stay DISPATCHED before its message is sent again.
    pub redispatch_after: Duration,
    pub log_sink: LogSinkConfig,
    /// How long a request or invocation waits for its buffered operation logs before it
    /// returns; `None`: it does not wait (they are flushed in the background).
    pub log_flush: Option<Duration>,
    pub listen_addr: SocketAddr,
    pub public_url: String,
    pub script_memory_limit_bytes: usize,
    pub script_timeout: Duration,
    /// Host calls one run may have in flight at once.
    pub script_max_concurrent_calls: usize,
    /// The largest provider answer one proxy call of a script may read.
    pub script_response_limit_bytes: usize,
    /// Log text one run may write.
    pub script_log_limit_bytes: usize,
    pub action_wait: ActionWait,
    pub action_wait_timeout: Duration,
    /// How often a running task heartbeats (and learns it was cancelled).
    pub heartbeat_interval: Duration,
    /// An extra provider catalog loaded over the builtin one.
    pub providers_file: Option<PathBuf>,
    /// Addresses the outbound policy lets tenants' requests reach although it refuses their
    /// kind (`LASSO_OUTBOUND_ALLOW`).
    pub outbound_allow: Vec<ipnet::IpNet>,
    /// When not empty, the only addresses tenants' requests may reach (`LASSO_OUTBOUND_ONLY`).
    pub outbound_only: Vec<ipnet::IpNet>,
    pub log_format: LogFormat,
    /// Set on AWS, where API Gateway holds the frontend SDK's sockets.
    pub auth_socket: Option<AuthSocketConfig>,
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads settings through `lookup`, so tests can pass a map instead of the environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &'static str| lookup(name).filter(|v| !v.trim().is_empty());
        // The value, else the default declared in SETTINGS (written nowhere else).
        let or_default = |name: &'static str| get(name).unwrap_or_else(|| default_of(name).into());
        let required = |name: &'static str, what: &str| {
            get(name).ok_or_else(|| ConfigError::new(name, format!("missing; expected {what}")))
        };

        let database_url = required("LASSO_DATABASE_URL", "a postgres:// URL")?;
        check_database_url(&database_url)?;

        let db_max_connections = parse_number(
            "LASSO_DB_MAX_CONNECTIONS",
            or_default("LASSO_DB_MAX_CONNECTIONS"),
            1..=1000,
        )?;

        let encryption_key = parse_encryption_key(&required(
            "LASSO_ENCRYPTION_KEY",
            "base64 of 32 random bytes (openssl rand -base64 32)",
        )?)?;

        let previous_encryption_keys = get("LASSO_PREVIOUS_ENCRYPTION_KEYS")
            .map(|raw| {
                raw.split(',')
                    .map(str::trim)
                    .filter(|k| !k.is_empty())
                    .map(|k| {
                        parse_encryption_key(k).map_err(|_| {
                            ConfigError::new(
                                "LASSO_PREVIOUS_ENCRYPTION_KEYS",
                                "expected comma-separated base64 keys of 32 bytes each",
                            )
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()?
            .unwrap_or_default();

        let script_store = parse_script_store(&required(
            "LASSO_SCRIPT_STORE",
            "s3://bucket[/prefix] or a directory path",
        )?)?;

        let runner_group = or_default("LASSO_RUNNER_GROUP");
        if !crate::runner_groups::valid_name(&runner_group) {
            return Err(ConfigError::new(
                "LASSO_RUNNER_GROUP",
                format!(
                    "expected {}, got `{runner_group}`",
                    crate::runner_groups::NAME_RULE
                ),
            ));
        }
        let transport = match or_default("LASSO_TASK_TRANSPORT").as_str() {
            "local" => TransportConfig::Local,
            "sqs" => parse_runner_queues(
                &runner_group,
                get("LASSO_RUNNER_QUEUE_URL"),
                get("LASSO_RUNNER_QUEUES"),
            )?,
            other => {
                return Err(ConfigError::new(
                    "LASSO_TASK_TRANSPORT",
                    format!("expected `local` or `sqs`, got `{other}`"),
                ));
            }
        };

        let environment_concurrency = parse_number(
            "LASSO_ENVIRONMENT_CONCURRENCY",
            or_default("LASSO_ENVIRONMENT_CONCURRENCY"),
            1..=10_000,
        )?;
        let redispatch_after_secs: u64 = parse_number(
            "LASSO_REDISPATCH_AFTER_SECS",
            or_default("LASSO_REDISPATCH_AFTER_SECS"),
            1..=86_400,
        )?;

        let log_sink = match or_default("LASSO_LOG_SINK").as_str() {
            "postgres" => LogSinkConfig::Postgres,
            "opensearch" => LogSinkConfig::OpenSearch {
                url: required(
                    "LASSO_OPENSEARCH_URL",
                    "the OpenSearch base URL (LASSO_LOG_SINK=opensearch)",
                )
                .and_then(|u| check_http_url("LASSO_OPENSEARCH_URL", u))?,
                auth: match or_default("LASSO_OPENSEARCH_AUTH").as_str() {
                    "none" => OpenSearchAuth::None,
                    "sigv4" => OpenSearchAuth::SigV4,
                    other => {
                        return Err(ConfigError::new(
                            "LASSO_OPENSEARCH_AUTH",
                            format!("expected `none` or `sigv4`, got `{other}`"),
                        ));
                    }
                },
                index_prefix: parse_index_prefix(or_default("LASSO_OPENSEARCH_INDEX_PREFIX"))?,
            },
            other => {
                return Err(ConfigError::new(
                    "LASSO_LOG_SINK",
                    format!("expected `postgres` or `opensearch`, got `{other}`"),
                ));
            }
        };

        let listen_addr = {
            let v = or_default("LASSO_LISTEN_ADDR");
            v.parse::<SocketAddr>().map_err(|_| {
                ConfigError::new(
                    "LASSO_LISTEN_ADDR",
                    format!("expected host:port such as 127.0.0.1:3003, got `{v}`"),
                )
            })?
        };

        // Its declared default names the rule, not a value: it follows LASSO_LISTEN_ADDR.
        let public_url = match get("LASSO_PUBLIC_URL") {
            None => format!("http://{listen_addr}"),
            Some(v) => check_http_url("LASSO_PUBLIC_URL", v)?
                .trim_end_matches('/')
                .to_string(),
        };

        let memory_mb: usize = parse_number(
            "LASSO_SCRIPT_MEMORY_MB",
            or_default("LASSO_SCRIPT_MEMORY_MB"),
            4..=4096,
        )?;
        let timeout_secs: u64 = parse_number(
            "LASSO_SCRIPT_TIMEOUT_SECS",
            or_default("LASSO_SCRIPT_TIMEOUT_SECS"),
            1..=86_400,
        )?;
        let script_max_concurrent_calls: usize = parse_number(
            "LASSO_SCRIPT_MAX_CONCURRENT_CALLS",
            or_default("LASSO_SCRIPT_MAX_CONCURRENT_CALLS"),
            1..=1000,
        )?;
        let response_mb: usize = parse_number(
            "LASSO_SCRIPT_RESPONSE_MB",
            or_default("LASSO_SCRIPT_RESPONSE_MB"),
            1..=4096,
        )?;
        let log_mb: usize = parse_number(
            "LASSO_SCRIPT_LOG_MB",
            or_default("LASSO_SCRIPT_LOG_MB"),
            1..=1024,
        )?;

        let action_wait = match or_default("LASSO_ACTION_WAIT").as_str() {
            "listen" => ActionWait::Listen,
            "poll" => ActionWait::Poll,
            other => {
                return Err(ConfigError::new(
                    "LASSO_ACTION_WAIT",
                    format!("expected `listen` or `poll`, got `{other}`"),
                ));
            }
        };
        let action_wait_secs: u64 = parse_number(
            "LASSO_ACTION_WAIT_SECS",
            or_default("LASSO_ACTION_WAIT_SECS"),
            1..=900,
        )?;
        let heartbeat_secs: u64 = parse_number(
            "LASSO_HEARTBEAT_SECS",
            or_default("LASSO_HEARTBEAT_SECS"),
            1..=60,
        )?;

        // On Lambda the process is frozen between invocations: flush before returning.
        let on_lambda = lookup("AWS_LAMBDA_RUNTIME_API").is_some();
        let log_flush = match get("LASSO_LOG_FLUSH_MS") {
            Some(raw) => Some(Duration::from_millis(parse_number(
                "LASSO_LOG_FLUSH_MS",
                raw,
                0..=30_000,
            )?)),
            None if on_lambda => Some(Duration::from_millis(300)),
            None => None,
        };

        let providers_file = get("LASSO_PROVIDERS_FILE").map(PathBuf::from);
        let outbound_allow = parse_cidrs("LASSO_OUTBOUND_ALLOW", get("LASSO_OUTBOUND_ALLOW"))?;
        let outbound_only = parse_cidrs("LASSO_OUTBOUND_ONLY", get("LASSO_OUTBOUND_ONLY"))?;

        let log_format = match or_default("LASSO_LOG_FORMAT").as_str() {
            "json" => LogFormat::Json,
            "text" => LogFormat::Text,
            other => {
                return Err(ConfigError::new(
                    "LASSO_LOG_FORMAT",
                    format!("expected `json` or `text`, got `{other}`"),
                ));
            }
        };

        let auth_socket = match get("LASSO_AUTH_SOCKET_ENDPOINT") {
            None => None,
            Some(endpoint) => Some(AuthSocketConfig {
                endpoint: check_http_url("LASSO_AUTH_SOCKET_ENDPOINT", endpoint)?
                    .trim_end_matches('/')
                    .to_string(),
                ack_function: get("LASSO_AUTH_SOCKET_ACK_FUNCTION")
                    .or_else(|| lookup("AWS_LAMBDA_FUNCTION_NAME"))
                    .ok_or_else(|| {
                        ConfigError::new(
                            "LASSO_AUTH_SOCKET_ACK_FUNCTION",
                            "missing; expected the name of the function that handles the WebSocket API's events (needed with LASSO_AUTH_SOCKET_ENDPOINT outside Lambda)",
                        )
                    })?,
            }),
        };

        Ok(Self {
            database_url: SecretString::from(database_url),
            db_max_connections,
            encryption_key,
            previous_encryption_keys,
            script_store,
            transport,
            runner_group,
            environment_concurrency,
            redispatch_after: Duration::from_secs(redispatch_after_secs),
            log_sink,
            log_flush,
            listen_addr,
            public_url,
            script_memory_limit_bytes: memory_mb * 1024 * 1024,
            script_timeout: Duration::from_secs(timeout_secs),
            script_max_concurrent_calls,
            script_response_limit_bytes: response_mb * 1024 * 1024,
            script_log_limit_bytes: log_mb * 1024 * 1024,
            action_wait,
            action_wait_timeout: Duration::from_secs(action_wait_secs),
            heartbeat_interval: Duration::from_secs(heartbeat_secs),
            providers_file,
            outbound_allow,
            outbound_only,
            log_format,
            auth_socket,
        })
    }
}

/// A comma-separated list of CIDRs (`10.0.0.0/8`) or single addresses (`::1`).
fn parse_cidrs(var: &'static str, value: Option<String>) -> Result<Vec<ipnet::IpNet>, ConfigError> {
    let Some(value) = value else {
        return Ok(Vec::new());
    };
    value
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(|item| {
            item.parse::<ipnet::IpNet>()
                .or_else(|_| item.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| {
                    ConfigError::new(
                        var,
                        format!("expected CIDRs such as `10.20.0.0/16,::1/128`, got `{item}`"),
                    )
                })
        })
        .collect()
}

/// Loads the configuration or ends the process with one line naming the bad setting. For the
/// binaries' `main`.
pub fn from_env_or_exit() -> Config {
    match Config::from_env() {
        Ok(config) => config,
        Err(e) => exit_with(e),
    }
}

/// Prints a configuration error as one line and exits with status 78 (EX_CONFIG).
pub fn exit_with(e: ConfigError) -> ! {
    eprintln!("error: {e}");
    std::process::exit(78)
}

/// Just the database URL, for commands that need nothing else (`lasso migrate`).
pub fn database_url_from_env() -> Result<SecretString, ConfigError> {
    let url = std::env::var("LASSO_DATABASE_URL")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .ok_or_else(|| {
            ConfigError::new("LASSO_DATABASE_URL", "missing; expected a postgres:// URL")
        })?;
    check_database_url(&url)?;
    Ok(SecretString::from(url))
}

fn check_database_url(url: &str) -> Result<(), ConfigError> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(())
    } else {
        // Never echo the value: it usually holds a password.
        Err(ConfigError::new(
            "LASSO_DATABASE_URL",
            "expected a URL starting with postgres:// or postgresql://",
        ))
    }
}

fn parse_number<T>(
    var: &'static str,
    raw: String,
    range: std::ops::RangeInclusive<T>,
) -> Result<T, ConfigError>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy,
{
    match raw.trim().parse::<T>() {
        Ok(n) if range.contains(&n) => Ok(n),
        _ => Err(ConfigError::new(
            var,
            format!(
                "expected a whole number from {} to {}, got `{raw}`",
                range.start(),
                range.end()
            ),
        )),
    }
}

fn parse_encryption_key(raw: &str) -> Result<EncryptionKey, ConfigError> {
    const VAR: &str = "LASSO_ENCRYPTION_KEY";
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(raw.trim())
        .map_err(|_| {
            ConfigError::new(VAR, "expected base64 of 32 random bytes; not valid base64")
        })?;
    let key: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
        ConfigError::new(
            VAR,
            format!(
                "expected base64 of 32 random bytes, got {} bytes",
                bytes.len()
            ),
        )
    })?;
    Ok(EncryptionKey::new(key))
}

fn parse_script_store(raw: &str) -> Result<ScriptStoreConfig, ConfigError> {
    const VAR: &str = "LASSO_SCRIPT_STORE";
    if let Some(rest) = raw.strip_prefix("s3://") {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(ConfigError::new(
                VAR,
                format!("expected s3://bucket[/prefix], got `{raw}` (no bucket)"),
            ));
        }
        return Ok(ScriptStoreConfig::S3 {
            bucket: bucket.to_string(),
            prefix: prefix.trim_matches('/').to_string(),
        });
    }
    let path = raw.strip_prefix("file://").unwrap_or(raw);
    if path.contains("://") {
        return Err(ConfigError::new(
            VAR,
            format!("expected s3://bucket[/prefix] or a directory path, got `{raw}`"),
        ));
    }
    Ok(ScriptStoreConfig::Dir(PathBuf::from(path)))
}

fn parse_index_prefix(prefix: String) -> Result<String, ConfigError> {
    let valid = !prefix.is_empty()
        && prefix
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        && !prefix.starts_with(['-', '_']);
    if valid {
        Ok(prefix)
    } else {
        Err(ConfigError::new(
            "LASSO_OPENSEARCH_INDEX_PREFIX",
            format!("expected lowercase letters, digits, `-` or `_`, got `{prefix}`"),
        ))
    }
}

/// The SQS queues of the runner groups: `LASSO_RUNNER_QUEUES` (every group by name) and
/// `LASSO_RUNNER_QUEUE_URL` (the own group's; it must agree with the map when both name it).
fn parse_runner_queues(
    own_group: &str,
    own_url: Option<String>,
    map: Option<String>,
) -> Result<TransportConfig, ConfigError> {
    const MAP: &str = "LASSO_RUNNER_QUEUES";
    let mut queues = BTreeMap::new();
    if let Some(map) = map {
        let parsed: BTreeMap<String, String> = serde_json::from_str(&map).map_err(|e| {
            ConfigError::new(
                MAP,
                format!("expected a JSON object of group name to queue URL: {e}"),
            )
        })?;
        for (group, url) in parsed {
            if !crate::runner_groups::valid_name(&group) {
                return Err(ConfigError::new(
                    MAP,
                    format!(
                        "group `{group}`: expected {}",
                        crate::runner_groups::NAME_RULE
                    ),
                ));
            }
            let url = check_http_url(MAP, url)
                .map_err(|e| ConfigError::new(MAP, format!("group `{group}`: {}", e.problem)))?;
            queues.insert(group, url);
        }
    }
    let own = match (own_url, queues.get(own_group)) {
        (Some(url), Some(listed)) if url != *listed => {
            return Err(ConfigError::new(
                "LASSO_RUNNER_QUEUE_URL",
                format!(
                    "`{url}` differs from the URL LASSO_RUNNER_QUEUES gives group `{own_group}` (`{listed}`)"
                ),
            ));
        }
        (Some(url), _) => check_http_url("LASSO_RUNNER_QUEUE_URL", url)?,
        (None, Some(listed)) => listed.clone(),
        (None, None) => {
            return Err(ConfigError::new(
                "LASSO_RUNNER_QUEUE_URL",
                format!(
                    "missing; expected the SQS URL of runner group `{own_group}`'s queue (LASSO_TASK_TRANSPORT=sqs), here or in LASSO_RUNNER_QUEUES"
                ),
            ));
        }
    };
    queues.insert(own_group.to_string(), own.clone());
    Ok(TransportConfig::Sqs {
        queue_url: own,
        queues,
    })
}

fn check_http_url(var: &'static str, value: String) -> Result<String, ConfigError> {
    match url::Url::parse(&value) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Ok(value),
        _ => Err(ConfigError::new(
            var,
            format!("expected an http(s) URL, got `{value}`"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

    fn base() -> HashMap<&'static str, String> {
        HashMap::from([
            (
                "LASSO_DATABASE_URL",
                "postgres://u:hunter2@localhost/db".to_string(),
            ),
            ("LASSO_ENCRYPTION_KEY", KEY.to_string()),
            ("LASSO_SCRIPT_STORE", "/tmp/scripts".to_string()),
        ])
    }

    fn load(map: &HashMap<&'static str, String>) -> Result<Config, ConfigError> {
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_are_local() {
        let c = load(&base()).unwrap();
        assert_eq!(c.transport, TransportConfig::Local);
        assert_eq!(c.log_sink, LogSinkConfig::Postgres);
        assert_eq!(c.listen_addr.to_string(), "127.0.0.1:3003");
        assert_eq!(c.public_url, "http://127.0.0.1:3003");
        assert_eq!(
            c.script_store,
            ScriptStoreConfig::Dir("/tmp/scripts".into())
        );
        assert_eq!(c.db_max_connections, 5);
        assert_eq!(c.action_wait, ActionWait::Listen);
        assert_eq!(c.action_wait_timeout, Duration::from_secs(25));
        assert_eq!(c.environment_concurrency, 20);
        assert_eq!(c.redispatch_after, Duration::from_secs(60));
        assert!(
            c.outbound_allow.is_empty(),
            "no outbound exceptions by default"
        );
    }

    /// Every path of the parser, so a setting read without a declared default (or a declared
    /// default the parser refuses) fails here rather than at someone's start-up.
    #[test]
    fn every_declared_default_parses() {
        let mut m = base();
        m.insert("LASSO_LOG_SINK", "opensearch".into());
        m.insert("LASSO_OPENSEARCH_URL", "http://127.0.0.1:9200".into());
        m.insert("LASSO_TASK_TRANSPORT", "sqs".into());
        m.insert(
            "LASSO_RUNNER_QUEUE_URL",
            "http://127.0.0.1:5000/123456789012/runner".into(),
        );
        let c = load(&m).unwrap();
        assert_eq!(
            c.log_sink,
            LogSinkConfig::OpenSearch {
                url: "http://127.0.0.1:9200".into(),
                auth: OpenSearchAuth::None,
                index_prefix: default_of("LASSO_OPENSEARCH_INDEX_PREFIX").into(),
            }
        );
        assert_eq!(c.heartbeat_interval, Duration::from_secs(10));
        assert_eq!(c.script_timeout, Duration::from_secs(300));
        assert_eq!(c.script_memory_limit_bytes, 64 * 1024 * 1024);
        assert_eq!(c.log_format, LogFormat::Json);
        assert_eq!(c.runner_group, "shared");
    }

    #[test]
    fn outbound_exceptions_are_cidrs_or_addresses() {
        let mut m = base();
        m.insert("LASSO_OUTBOUND_ALLOW", "10.20.0.0/16, ::1".to_string());
        let c = load(&m).unwrap();
        assert_eq!(
            c.outbound_allow,
            vec![
                "10.20.0.0/16".parse::<ipnet::IpNet>().unwrap(),
                "::1/128".parse().unwrap()
            ]
        );
    }

    #[test]
    fn debug_never_prints_secrets() {
        let c = load(&base()).unwrap();
        let printed = format!("{c:?}");
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(!printed.contains(KEY), "{printed}");
    }

    #[test]
    fn missing_variable_is_named() {
        let mut m = base();
        m.remove("LASSO_ENCRYPTION_KEY");
        let e = load(&m).unwrap_err();
        assert_eq!(e.var, "LASSO_ENCRYPTION_KEY");
        assert!(e.to_string().contains("missing"));
    }

    #[test]
    fn malformed_values_are_named_without_secrets() {
        let cases = [
            ("LASSO_ENCRYPTION_KEY", "c2hvcnQ="),
            ("LASSO_DATABASE_URL", "mysql://u:hunter2@x/db"),
            ("LASSO_TASK_TRANSPORT", "kafka"),
            ("LASSO_LOG_SINK", "splunk"),
            ("LASSO_LISTEN_ADDR", "nowhere"),
            ("LASSO_DB_MAX_CONNECTIONS", "0"),
            ("LASSO_SCRIPT_STORE", "gs://bucket"),
            ("LASSO_SCRIPT_MEMORY_MB", "lots"),
            ("LASSO_ACTION_WAIT", "sleep"),
            ("LASSO_ACTION_WAIT_SECS", "0"),
            ("LASSO_ENVIRONMENT_CONCURRENCY", "0"),
            ("LASSO_REDISPATCH_AFTER_SECS", "soon"),
            ("LASSO_OUTBOUND_ALLOW", "10.0.0.0/33"),
        ];
        for (var, value) in cases {
            let mut m = base();
            m.insert(var, value.to_string());
            let e = load(&m).unwrap_err();
            assert_eq!(e.var, var, "{e}");
            assert!(!e.to_string().contains("hunter2"), "{e}");
            assert!(!e.to_string().contains('\n'), "{e}");
        }
    }

    #[test]
    fn sqs_needs_a_queue_url() {
        let mut m = base();
        m.insert("LASSO_TASK_TRANSPORT", "sqs".into());
        assert_eq!(load(&m).unwrap_err().var, "LASSO_RUNNER_QUEUE_URL");
        m.insert(
            "LASSO_RUNNER_QUEUE_URL",
            "http://127.0.0.1:5000/123456789012/runner".into(),
        );
        assert!(matches!(
            load(&m).unwrap().transport,
            TransportConfig::Sqs { .. }
        ));
    }

    #[test]
    fn runner_queues_map_every_group_and_agree_with_the_own_queue() {
        let shared = "http://127.0.0.1:5000/123456789012/runner";
        let acme = "http://127.0.0.1:5000/123456789012/runner-acme";
        let mut m = base();
        m.insert("LASSO_TASK_TRANSPORT", "sqs".into());
        m.insert(
            "LASSO_RUNNER_QUEUES",
            format!(r#"{{"shared":"{shared}","acme":"{acme}"}}"#),
        );
        let TransportConfig::Sqs { queue_url, queues } = load(&m).unwrap().transport else {
            panic!("sqs")
        };
        assert_eq!(queue_url, shared);
        assert_eq!(queues.len(), 2);
        assert_eq!(queues["acme"], acme);

        // A dedicated group's runner: its own queue is the map's entry for it.
        m.insert("LASSO_RUNNER_GROUP", "acme".into());
        let c = load(&m).unwrap();
        assert_eq!(c.runner_group, "acme");
        assert!(matches!(c.transport, TransportConfig::Sqs { queue_url, .. } if queue_url == acme));

        m.insert("LASSO_RUNNER_QUEUE_URL", shared.into());
        let e = load(&m).unwrap_err();
        assert_eq!(e.var, "LASSO_RUNNER_QUEUE_URL");
        assert!(e.problem.contains("acme"), "{e}");

        m.remove("LASSO_RUNNER_QUEUE_URL");
        m.insert("LASSO_RUNNER_GROUP", "other".into());
        assert_eq!(load(&m).unwrap_err().var, "LASSO_RUNNER_QUEUE_URL");
        m.insert("LASSO_RUNNER_GROUP", "Bad Name".into());
        assert_eq!(load(&m).unwrap_err().var, "LASSO_RUNNER_GROUP");

        m.insert("LASSO_RUNNER_GROUP", "shared".into());
        for bad in [
            "[]",
            r#"{"shared": 3}"#,
            r#"{"Shared":"http://127.0.0.1:5000/1/q"}"#,
            r#"{"shared":"not a url"}"#,
        ] {
            m.insert("LASSO_RUNNER_QUEUES", bad.into());
            assert_eq!(load(&m).unwrap_err().var, "LASSO_RUNNER_QUEUES", "{bad}");
        }
    }

    #[test]
    fn the_auth_socket_api_needs_an_https_endpoint_and_names_its_ack_function() {
        let mut m = base();
        assert_eq!(load(&m).unwrap().auth_socket, None);
        m.insert(
            "LASSO_AUTH_SOCKET_ENDPOINT",
            "https://abc.execute-api.us-east-1.amazonaws.com/auth/".into(),
        );
        let e = load(&m).unwrap_err();
        assert_eq!(e.var, "LASSO_AUTH_SOCKET_ACK_FUNCTION", "{e}");

        // On Lambda the function acks through itself.
        m.insert("AWS_LAMBDA_FUNCTION_NAME", "lasso-api".into());
        assert_eq!(
            load(&m).unwrap().auth_socket,
            Some(AuthSocketConfig {
                endpoint: "https://abc.execute-api.us-east-1.amazonaws.com/auth".into(),
                ack_function: "lasso-api".into(),
            })
        );
        m.insert("LASSO_AUTH_SOCKET_ACK_FUNCTION", "acker".into());
        assert_eq!(load(&m).unwrap().auth_socket.unwrap().ack_function, "acker");

        m.insert("LASSO_AUTH_SOCKET_ENDPOINT", "wss://abc/auth".into());
        assert_eq!(load(&m).unwrap_err().var, "LASSO_AUTH_SOCKET_ENDPOINT");
    }

    #[test]
    fn s3_store_parses_bucket_and_prefix() {
        let mut m = base();
        m.insert("LASSO_SCRIPT_STORE", "s3://bucket/some/prefix/".into());
        assert_eq!(
            load(&m).unwrap().script_store,
            ScriptStoreConfig::S3 {
                bucket: "bucket".into(),
                prefix: "some/prefix".into()
            }
        );
    }
}

#[cfg(test)]
mod readme {
    /// The README's settings table is exactly [`super::SETTINGS`], so the docs cannot drift.
    #[test]
    fn readme_documents_every_setting() {
        let readme = include_str!("../../../README.md");
        let start = readme
            .find("<!-- settings:start -->")
            .expect("settings start marker");
        let end = readme
            .find("<!-- settings:end -->")
            .expect("settings end marker");
        let table = &readme[start..end];
        for s in super::SETTINGS {
            let default = s.default.map_or("—".to_string(), |d| format!("`{d}`"));
            let row = format!("| `{}` | {} | {} |", s.name, default, s.description);
            assert!(table.contains(&row), "README settings table lacks:\n{row}");
        }
        let rows = table.lines().filter(|l| l.starts_with("| `")).count();
        assert_eq!(
            rows,
            super::SETTINGS.len(),
            "README lists settings that do not exist"
        );
    }
}
