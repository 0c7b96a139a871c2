//! `lasso emulate` with the four functions served by `cargo lambda watch` against moto S3/SQS:
//! the scheduler invoked on its schedule hands work to SQS, the event source mapping bridges the
//! queue to runner invocations and deletes only what the runner did not report as failed.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use lasso_cli::emulate::{self, EmulateOptions};
use lasso_cli::event_source::Mapping;
use lasso_shared::queue::{NewTask, TaskKind, TaskState, tasks};
use lasso_shared::{Context, environments};
use lasso_tests::*;
use serde_json::json;

/// `cargo lambda watch`, stopped with its whole process group (cargo and the functions).
struct Watch {
    child: Child,
    log: PathBuf,
    endpoint: String,
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
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

fn workspace_root() -> PathBuf {
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
async fn start_watch(settings: &[(&str, String)]) -> Watch {
    use std::os::unix::process::CommandExt;
    let port = free_port();
    let log = temp_dir("cargo-lambda-watch").join("watch.log");
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
    eventually(
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

/// Waits for the task to end. The first invocation of each function builds it, which takes a
/// while on a cold cache; a timeout shows what the functions logged.
async fn finished(ctx: &Context, id: uuid::Uuid, watch: &Watch) -> tasks::Task {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(600);
    loop {
        if let Some(task) = tasks::get(&ctx.db, id).await.unwrap()
            && task.state.is_terminal()
        {
            return task;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "task {id} did not finish; cargo lambda watch log:\n{}",
            watch.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

const GREETER: &str = "export default async function (nango, input) {
    return { greeting: `hello ${input.who}` };
}";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_skeleton_runs_under_cargo_lambda_watch_and_lasso_emulate() {
    let db = fresh_database().await;
    let bucket = create_bucket().await;
    let queue = create_queue(60).await;
    let settings = vec![
        ("LASSO_DATABASE_URL", db.url.clone()),
        ("LASSO_ENCRYPTION_KEY", TEST_ENCRYPTION_KEY.to_string()),
        ("LASSO_SCRIPT_STORE", format!("s3://{bucket}/scripts")),
        ("LASSO_TASK_TRANSPORT", "sqs".to_string()),
        ("LASSO_RUNNER_QUEUE_URL", queue.clone()),
        ("AWS_ENDPOINT_URL", aws_endpoint()),
        ("AWS_ACCESS_KEY_ID", "test".to_string()),
        ("AWS_SECRET_ACCESS_KEY", "test".to_string()),
        ("AWS_REGION", "us-east-1".to_string()),
    ];
    let config = config(&db, &settings);
    let ctx = Context::build(config.clone(), Some(aws_sdk_config())).unwrap();
    ctx.scripts
        .put("greeter.js", Bytes::from_static(GREETER.as_bytes()))
        .await
        .unwrap();
    let (env, _) = environments::create(&ctx.db, "emulated").await.unwrap();
    let watch = start_watch(&settings).await;

    let (stop, stopped) = tokio::sync::watch::channel(false);
    let emulator = tokio::spawn({
        let endpoint = watch.endpoint.clone();
        async move {
            emulate::run(
                &config,
                &aws_sdk_config(),
                EmulateOptions {
                    endpoint,
                    scheduler_every: Duration::from_secs(2),
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
        }
    });

    let ids = tasks::insert(
        &ctx.db,
        &["lambda", "moto"].map(|who| {
            NewTask::new(
                env.id,
                TaskKind::Script,
                "greeter",
                json!({"script_key": "greeter.js", "input": {"who": who}}),
            )
        }),
    )
    .await
    .unwrap();
    for (id, who) in ids.iter().zip(["lambda", "moto"]) {
        let task = finished(&ctx, *id, &watch).await;
        assert_eq!(
            task.state,
            TaskState::Succeeded,
            "{task:?}\n{}",
            watch.log()
        );
        assert_eq!(task.output.unwrap()["greeting"], format!("hello {who}"));
    }
    // The mapping deleted what the runner handled: nothing comes back after the visibility
    // timeout would have passed.
    let leftover = ctx
        .transport()
        .receive(10, Duration::from_secs(1), Duration::from_secs(60))
        .await
        .unwrap();
    assert!(leftover.is_empty(), "{leftover:?}");
    // The functions ran in their own processes, as on Lambda.
    let log = watch.log();
    assert!(log.contains("scheduler tick"), "{log}");
    assert!(log.contains("task succeeded"), "{log}");

    stop.send(true).unwrap();
    emulator.await.unwrap().unwrap();
}
