//! The Lambda functions served by `cargo lambda watch` (each in its own process, as on
//! Lambda), for the tests that drive them through `lasso emulate` (tests/emulate.rs,
//! tests/faults.rs).

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// `cargo lambda watch`, stopped with its whole process group (cargo and the functions).
pub struct Watch {
    child: Child,
    log: PathBuf,
    pub endpoint: String,
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", "--", &format!("-{}", self.child.id())])
            .status();
        let _ = self.child.wait();
    }
}

impl Watch {
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// `lasso emulate` against a [`Watch`]: EventBridge's minute for the scheduler and the
/// dispatcher (each scheduler invocation ticks every 10 s within it) and SQS mappings that wait
/// 1 s for a batch. Runs until [`Emulator::stop`].
pub struct Emulator {
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Emulator {
    pub fn start(config: &lasso_services::config::Config, watch: &Watch) -> Self {
        use lasso_cli::emulate::{self, EmulateOptions};
        use lasso_cli::event_source::Mapping;

        let (stop, stopped) = tokio::sync::watch::channel(false);
        let (config, endpoint) = (config.clone(), watch.endpoint.clone());
        let task = tokio::spawn(async move {
            emulate::run(
                &config,
                &crate::aws_sdk_config(),
                EmulateOptions {
                    endpoint,
                    scheduler_every: Duration::from_secs(60),
                    dispatcher_every: Duration::from_secs(60),
                    runners: Default::default(),
                    mapping: Mapping {
                        wait: Duration::from_secs(1),
                        ..Mapping::default()
                    },
                },
                stopped,
            )
            .await
        });
        Self { stop, task }
    }

    /// Stops it and waits for it; panics if it failed.
    pub async fn stop(self) {
        self.stop.send(true).unwrap();
        self.task.await.unwrap().unwrap();
    }
}

pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The target dir this test was built in (…/target/debug/deps/emulate-…), so the functions are
/// built next to it rather than from scratch.
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let exe = std::env::current_exe().unwrap();
            exe.ancestors().nth(3).unwrap().to_path_buf()
        })
}

fn cargo_lambda() -> PathBuf {
    let cache = std::env::var_os("LASSO_CACHE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/lasso"));
    let venv = cache.join("venv/bin/cargo-lambda");
    assert!(
        venv.exists(),
        "{} is missing: `scripts/bootstrap --with-lambda` installs it (make test does)",
        venv.display()
    );
    venv
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Serves the workspace's functions with `settings` as their environment.
pub async fn start_watch(settings: &[(&str, String)]) -> Watch {
    use std::os::unix::process::CommandExt;
    let port = free_port();
    let log = crate::temp_dir("cargo-lambda-watch").join("watch.log");
    let out = std::fs::File::create(&log).unwrap();
    let child = Command::new(cargo_lambda())
        .args([
            "lambda",
            "watch",
            "--ignore-changes",
            "-A",
            "127.0.0.1",
            "-P",
        ])
        .arg(port.to_string())
        .current_dir(workspace_root())
        .env("CARGO_TARGET_DIR", target_dir())
        .env("LASSO_LOG_FORMAT", "json")
        .env("LASSO_OUTBOUND_ALLOW", crate::LOOPBACK)
        .envs(settings.iter().map(|(k, v)| (*k, v)))
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .process_group(0)
        .spawn()
        .expect("cargo lambda watch starts");
    let watch = Watch {
        child,
        log,
        endpoint: format!("http://127.0.0.1:{port}"),
    };
    crate::eventually(
        "cargo lambda watch to listen",
        Duration::from_secs(60),
        || async {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .ok()
                .map(|_| ())
        },
    )
    .await;
    watch
}

/// Polls `check` until it gives a value. The first invocation of each function builds it,
/// which takes a while on a cold cache; a timeout shows what the functions logged.
pub async fn until<T, F, Fut>(watch: &Watch, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(600);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}; cargo lambda watch log:\n{}",
            watch.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
