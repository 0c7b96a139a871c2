//! Test support: the real services started by `scripts/services` (Postgres, moto, Elasticsearch),
//! a fresh migrated database per test, and contexts wired to either adapter set.

use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use lasso_shared::config::Config;
use lasso_shared::{Context, db};
use secrecy::SecretString;
use sqlx::PgPool;

pub mod auth;
pub mod browser;
pub mod fakehub;
pub mod receiver;

const HOW_TO_START: &str = "start the test services first: `make test` does it, or `eval \"$(scripts/services start && scripts/services env)\"`";

fn required_env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set; {HOW_TO_START}"))
}

/// Admin URL of the test Postgres cluster.
pub fn postgres_url() -> String {
    required_env("LASSO_TEST_DATABASE_URL")
}

/// moto's endpoint (S3 and SQS).
pub fn aws_endpoint() -> String {
    required_env("LASSO_TEST_AWS_ENDPOINT")
}

/// Elasticsearch 7.9's base URL.
pub fn elasticsearch_url() -> String {
    required_env("LASSO_TEST_ES_URL")
}

/// A short random suffix for names that must not collide between tests.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

pub struct TestDb {
    pub pool: PgPool,
    pub url: String,
}

/// A new database with the migrations applied, so tests never see each other's rows.
pub async fn fresh_database() -> TestDb {
    let admin = postgres_url();
    let name = unique("lasso_test").replace('-', "_");
    let mut url = url::Url::parse(&admin).expect("LASSO_TEST_DATABASE_URL is a URL");
    url.set_path(&name);
    let url = url.to_string();
    let secret = SecretString::from(url.clone());
    db::create_database_if_missing(&secret)
        .await
        .expect("create test database");
    let pool = db::pool_for(&secret, 10).expect("pool");
    db::migrate(&pool).await.expect("migrate test database");
    TestDb { pool, url }
}

/// `db` as the database user of runner `group` (created, or given a new password): what that
/// group's runners connect with, under row-level security.
pub async fn runner_database(db: &TestDb, group: &str) -> TestDb {
    let password = lasso_shared::runner_groups::create_database_user(&db.pool, group)
        .await
        .expect("create the runner user");
    let mut url = url::Url::parse(&db.url).expect("a database URL");
    url.set_username(&lasso_shared::runner_groups::database_user(group))
        .expect("a user name");
    url.set_password(Some(secrecy::ExposeSecret::expose_secret(&password)))
        .expect("a password");
    TestDb {
        pool: db::pool_for(&url.to_string().into(), 2).expect("pool"),
        url: url.to_string(),
    }
}

pub const TEST_ENCRYPTION_KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

/// A configuration for `db` with the given extra settings (`LASSO_*` names).
pub fn config(db: &TestDb, settings: &[(&str, String)]) -> Config {
    let script_dir = std::env::temp_dir().join(unique("lasso-scripts"));
    Config::from_lookup(|name| {
        if let Some((_, v)) = settings.iter().find(|(k, _)| *k == name) {
            return Some(v.clone());
        }
        match name {
            "LASSO_DATABASE_URL" => Some(db.url.clone()),
            "LASSO_ENCRYPTION_KEY" => Some(TEST_ENCRYPTION_KEY.into()),
            "LASSO_SCRIPT_STORE" => Some(script_dir.display().to_string()),
            "LASSO_SCRIPT_TIMEOUT_SECS" => Some("10".into()),
            _ => None,
        }
    })
    .expect("test configuration is valid")
}

/// The AWS SDK configuration pointing at moto.
pub fn aws_sdk_config() -> aws_config::SdkConfig {
    aws_config::SdkConfig::builder()
        .endpoint_url(aws_endpoint())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_s3::config::SharedCredentialsProvider::new(
            aws_sdk_s3::config::Credentials::new("test", "test", None, None, "lasso-tests"),
        ))
        .behavior_version(aws_config::BehaviorVersion::latest())
        .build()
}

pub async fn create_bucket() -> String {
    let bucket = unique("lasso-scripts");
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&aws_sdk_config())
            .force_path_style(true)
            .build(),
    );
    s3.create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .expect("create bucket on moto");
    bucket
}

/// Creates an SQS queue on moto; returns its URL.
pub async fn create_queue(visibility_secs: u32) -> String {
    let sqs = aws_sdk_sqs::Client::new(&aws_sdk_config());
    sqs.create_queue()
        .queue_name(unique("lasso-runner"))
        .attributes(
            aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout,
            visibility_secs.to_string(),
        )
        .send()
        .await
        .expect("create queue on moto")
        .queue_url()
        .expect("queue url")
        .to_string()
}

/// Local adapters: a script directory, the in-process transport, Postgres logs.
pub async fn local_context(db: &TestDb) -> Context {
    Context::build(config(db, &[]), None).expect("local context")
}

/// AWS adapters on moto: S3 script store and SQS transport (Postgres logs).
pub async fn aws_context(db: &TestDb) -> Context {
    let bucket = create_bucket().await;
    let queue_url = create_queue(30).await;
    let cfg = config(
        db,
        &[
            ("LASSO_SCRIPT_STORE", format!("s3://{bucket}/scripts")),
            ("LASSO_TASK_TRANSPORT", "sqs".into()),
            ("LASSO_RUNNER_QUEUE_URL", queue_url),
        ],
    );
    Context::build(cfg, Some(aws_sdk_config())).expect("aws context")
}

/// Polls `check` until it returns `Some`, or panics after `timeout` naming `what`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Serves the api router on an ephemeral local port; returns its base URL.
pub async fn serve_api(ctx: Context) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        axum::serve(listener, lasso_api::router(ctx))
            .await
            .expect("serve api");
    });
    format!("http://{addr}")
}

pub fn temp_dir(prefix: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(unique(prefix));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// `$LASSO_CACHE_DIR/node/node_modules` (default `~/.cache/lasso`), where `scripts/bootstrap
/// --with-node` installs the npm packages the tests use.
pub fn node_modules() -> PathBuf {
    let cache = std::env::var_os("LASSO_CACHE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME is set")).join(".cache/lasso")
        });
    cache.join("node/node_modules")
}

/// Compiles `tests/fixtures/<project>` and deploys it to the environment, as `lasso deploy` does.
pub async fn deploy_fixture(ctx: &Context, environment_id: i64, project: &str) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(project);
    let compiled = lasso_shared::scripts::compile(&dir).unwrap();
    lasso_shared::scripts::deploy(
        &ctx.db,
        ctx.scripts.as_ref(),
        environment_id,
        lasso_shared::scripts::DeployRequest {
            integration: None,
            functions: compiled.functions,
        },
    )
    .await
    .unwrap();
}

/// Runs `tests/node/<script>` with Nango's Node client (`NANGO_NODE_MODULE`) and `env`;
/// panics with its output unless it succeeds. Returns its stdout.
pub async fn run_node_client(script: &str, env: &[(&str, &str)]) -> String {
    let client = node_modules().join("@nangohq/node/dist/index.js");
    assert!(
        client.exists(),
        "{} is missing; run `scripts/bootstrap --with-node`",
        client.display()
    );
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("node")
        .join(script);
    let out = tokio::process::Command::new("node")
        .arg(&script)
        .env("NANGO_NODE_MODULE", &client)
        .envs(env.iter().copied())
        .kill_on_drop(true)
        .output()
        .await
        .expect("run node (is Node.js installed?)");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{} failed:\n{stdout}\n{}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// A client for the api with one environment's secret key.
#[derive(Clone)]
pub struct Api {
    pub base: String,
    pub key: String,
    pub http: reqwest::Client,
}

impl Api {
    pub fn new(base: &str, key: &str) -> Self {
        Self {
            base: base.to_string(),
            key: key.to_string(),
            http: reqwest::Client::new(),
        }
    }

    /// Sends `method path` with an optional JSON body; returns the status and the JSON answer
    /// (`Null` when the body is empty or not JSON).
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.key);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("api request");
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
        )
    }

    pub async fn get(&self, path: &str) -> (u16, serde_json::Value) {
        self.call(reqwest::Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    pub async fn patch(&self, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
        self.call(reqwest::Method::PATCH, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> (u16, serde_json::Value) {
        self.call(reqwest::Method::DELETE, path, None).await
    }
}

/// Writes a providers.yaml for `LASSO_PROVIDERS_FILE`; returns its path.
pub fn providers_file(yaml: &str) -> PathBuf {
    let path = temp_dir("lasso-providers").join("providers.yaml");
    std::fs::write(&path, yaml).expect("write providers file");
    path
}

/// Serves `router` on an ephemeral local port (a fake provider, a webhook receiver); returns
/// its base URL.
pub async fn serve(router: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        axum::serve(listener, router).await.expect("serve");
    });
    format!("http://{addr}")
}

/// What a test binary logged, at every level (see [`captured_logs`]).
#[derive(Clone, Default)]
pub struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl LogBuffer {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl std::io::Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The process-wide log capture, at every level, for tests that check what is logged. Call it
/// before a test makes its first request: a per-thread subscriber would miss events whose
/// callsites other tests registered first.
pub fn captured_logs() -> &'static LogBuffer {
    static LOGS: OnceLock<LogBuffer> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buffer = LogBuffer::default();
        let writer = buffer.clone();
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .init();
        buffer
    })
}
