//! Test support: the real services started by `scripts/services` (Postgres, moto, Elasticsearch),
//! a fresh migrated database per test, and contexts wired to either adapter set.

use lasso_services::EnvironmentId;
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use lasso_services::config::Config;
use lasso_services::queue::{FunctionPayload, Payload};
use lasso_services::{Context, db};
use secrecy::SecretString;
use sqlx::PgPool;

pub mod app;
pub mod auth;
pub mod browser;
pub mod contacts;
pub mod fakehub;
pub mod lambda;
pub mod receiver;

pub use app::{TestApp, TestAppBuilder};

const HOW_TO_START: &str = "start the test services first: `make test` does it, or `eval \"$(scripts/services start && scripts/services env)\"`";

fn required_env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set; {HOW_TO_START}"))
}

/// The payload of a task that runs `function` of `integration` for `connection_id`.
pub fn function_payload(
    integration: &str,
    connection_id: &str,
    function: &str,
    input: Option<serde_json::Value>,
) -> Payload {
    Payload::Function(FunctionPayload {
        integration: integration.into(),
        connection_id: connection_id.into(),
        function: function.into(),
        input,
        full: false,
        last_sync_date: None,
        async_caller: false,
    })
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

/// A new database with the migrations applied, so tests never see each other's rows: a copy of
/// the migrated template ([`template_database`]), which costs one `CREATE DATABASE` instead of
/// every migration.
pub async fn fresh_database() -> TestDb {
    let name = unique("lasso_test").replace('-', "_");
    let template = template_database().await;
    let mut admin = admin_connection().await;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "CREATE DATABASE {name} TEMPLATE {template}"
    )))
    .execute(&mut admin)
    .await
    .expect("create the test database from the template");
    let url = database_url(&name);
    let pool = db::pool_for(&SecretString::from(url.clone()), 10).expect("pool");
    TestDb { pool, url }
}

fn database_url(name: &str) -> String {
    let mut url = url::Url::parse(&postgres_url()).expect("LASSO_TEST_DATABASE_URL is a URL");
    url.set_path(name);
    url.to_string()
}

async fn admin_connection() -> sqlx::PgConnection {
    use sqlx::Connection;
    sqlx::PgConnection::connect(&postgres_url())
        .await
        .expect("connect to the test Postgres")
}

/// The migrated database every test database is copied from, made once per set of migrations
/// (its name carries their checksums) by whichever test process gets there first.
async fn template_database() -> &'static str {
    static TEMPLATE: tokio::sync::OnceCell<String> = tokio::sync::OnceCell::const_new();
    TEMPLATE
        .get_or_init(|| async {
            let mut hash = <sha2::Sha256 as sha2::Digest>::new();
            for m in db::MIGRATOR.iter() {
                sha2::Digest::update(&mut hash, m.version.to_le_bytes());
                sha2::Digest::update(&mut hash, &*m.checksum);
            }
            let name = format!(
                "lasso_template_{}",
                &hex::encode(sha2::Digest::finalize(hash))[..16]
            );
            let mut admin = admin_connection().await;
            // Concurrent test processes build it once: the lock serializes them, and the
            // finished template appears under its name in one rename.
            sqlx::query("SELECT pg_advisory_lock(hashtext($1))")
                .bind(&name)
                .execute(&mut admin)
                .await
                .expect("lock the template");
            let exists: bool =
                sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
                    .bind(&name)
                    .fetch_one(&mut admin)
                    .await
                    .expect("look for the template");
            if !exists {
                let building = format!("{name}_building");
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {building}"
                )))
                .execute(&mut admin)
                .await
                .expect("drop a half-built template");
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {building}")))
                    .execute(&mut admin)
                    .await
                    .expect("create the template");
                let pool =
                    db::pool_for(&SecretString::from(database_url(&building)), 1).expect("pool");
                db::migrate(&pool).await.expect("migrate the template");
                pool.close().await;
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "ALTER DATABASE {building} RENAME TO {name}"
                )))
                .execute(&mut admin)
                .await
                .expect("name the template");
            }
            sqlx::query("SELECT pg_advisory_unlock(hashtext($1))")
                .bind(&name)
                .execute(&mut admin)
                .await
                .expect("unlock the template");
            name
        })
        .await
}

/// `db` as the database user of runner `group` (created, or given a new password): what that
/// group's runners connect with, under row-level security.
pub async fn runner_database(db: &TestDb, group: &str) -> TestDb {
    let password = lasso_services::runner_groups::create_database_user(&db.pool, group)
        .await
        .expect("create the runner user");
    let mut url = url::Url::parse(&db.url).expect("a database URL");
    url.set_username(&lasso_services::runner_groups::database_user(group))
        .expect("a user name");
    url.set_password(Some(secrecy::ExposeSecret::expose_secret(&password)))
        .expect("a password");
    TestDb {
        pool: db::pool_for(&url.to_string().into(), 2).expect("pool"),
        url: url.to_string(),
    }
}

/// Loopback as outbound-policy exceptions (`LASSO_OUTBOUND_ALLOW`).
pub const LOOPBACK: &str = "127.0.0.0/8,::1/128";

pub const TEST_ENCRYPTION_KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

/// A configuration for `db` with the given extra settings (`LASSO_*` names).
pub fn config(db: &TestDb, settings: &[(&str, String)]) -> Config {
    let script_dir = test_root().join(unique("lasso-scripts"));
    Config::from_lookup(|name| {
        if let Some((_, v)) = settings.iter().find(|(k, _)| *k == name) {
            return Some(v.clone());
        }
        match name {
            "LASSO_DATABASE_URL" => Some(db.url.clone()),
            "LASSO_ENCRYPTION_KEY" => Some(TEST_ENCRYPTION_KEY.into()),
            "LASSO_SCRIPT_STORE" => Some(script_dir.display().to_string()),
            "LASSO_SCRIPT_TIMEOUT_SECS" => Some("10".into()),
            // The tests' fake providers and receivers listen on loopback, which the production
            // outbound policy refuses; a test of that policy sets this to nothing.
            "LASSO_OUTBOUND_ALLOW" => Some(LOOPBACK.into()),
            _ => None,
        }
    })
    .expect("test configuration is valid")
}

/// The AWS SDK configuration pointing at moto.
pub fn aws_sdk_config() -> aws_config::SdkConfig {
    aws_sdk_config_at(&aws_endpoint())
}

/// The AWS SDK configuration for every service at `endpoint`, with test credentials.
pub fn aws_sdk_config_at(endpoint: &str) -> aws_config::SdkConfig {
    aws_config::SdkConfig::builder()
        .endpoint_url(endpoint)
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

/// Waits up to `timeout` for task `id` to end (succeeded, failed or cancelled) and answers it;
/// panics naming `what` if it does not.
pub async fn task_ended(
    db: &PgPool,
    id: uuid::Uuid,
    what: &str,
    timeout: Duration,
) -> lasso_services::queue::tasks::Task {
    eventually(what, timeout, || async {
        let task = lasso_services::queue::tasks::get(db, id).await.unwrap()?;
        task.state.is_terminal().then_some(task)
    })
    .await
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

/// A new directory under this process's [`test_root`].
pub fn temp_dir(prefix: &str) -> PathBuf {
    let dir = test_root().join(unique(prefix));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// Where this test process keeps its files: `$TMPDIR/lasso-tests-<pid>`. Contexts and servers
/// outlive the test functions that made them (they are cloned into tasks), so files are not
/// removed one by one; instead each process removes the roots of test processes that have
/// ended, and `make test` runs the tests with a `TMPDIR` of their own that it removes.
pub fn test_root() -> &'static std::path::Path {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        let tmp = std::env::temp_dir();
        if let Ok(entries) = std::fs::read_dir(&tmp) {
            for entry in entries.flatten() {
                let name = entry.file_name();
                let Some(pid) = name.to_str().and_then(|n| n.strip_prefix("lasso-tests-")) else {
                    continue;
                };
                if !std::path::Path::new("/proc").join(pid).exists() {
                    let _ = std::fs::remove_dir_all(entry.path());
                }
            }
        }
        let root = tmp.join(format!("lasso-tests-{}", std::process::id()));
        std::fs::create_dir_all(&root).expect("test root");
        root
    })
}

/// Runs the `#[ignore]`d test `name` (its full path, `module::test`) in a process of its own
/// and fails unless it passes: for tests that measure the whole process, such as its memory,
/// which other tests running at the same time would disturb.
pub fn run_alone(name: &str) {
    let out = std::process::Command::new(std::env::current_exe().expect("the test binary"))
        .args([
            name,
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .output()
        .expect("run the test binary");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "{name} failed on its own:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
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
pub async fn deploy_fixture(ctx: &Context, environment_id: EnvironmentId, project: &str) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(project);
    let compiled = lasso_compile::compile(&dir).unwrap();
    lasso_services::scripts::deploy(
        &ctx.db,
        ctx.scripts.as_ref(),
        environment_id,
        lasso_services::scripts::DeployRequest {
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
