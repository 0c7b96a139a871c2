//! Runner cold start: from spawning the runner's binary to its first request for a task
//! (`GET /2018-06-01/runtime/invocation/next` on the Lambda runtime API, which a local listener
//! plays), with the settings the runner has on AWS (S3 script store, SQS transport, JSON logs).
//! Nothing is sent to AWS before that request; the Postgres pool connects on first use. Against
//! `node -e 0` (start to exit) in the same run. Then the sizes of the four functions' release
//! binaries: what `make build-lambda` wrote (target/lambda/*/bootstrap) when it is there, else
//! `$CARGO_TARGET_DIR/release/<function>` (scripts/bench builds them, as `make build-lambda`
//! does, in one build).
//!
//! The binary: `LASSO_BENCH_RUNNER_BIN`, else target/lambda/runner/bootstrap (what is deployed),
//! else `$CARGO_TARGET_DIR/release/runner` (scripts/bench builds it), else the debug build (the
//! table says which). Prints a Markdown table.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpListener;

const RUNS: usize = 30;
const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn target_dir() -> PathBuf {
    std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| repo().join("target"))
}

/// The runner binary and how it was built.
fn runner_binary() -> anyhow::Result<(PathBuf, &'static str)> {
    if let Ok(path) = std::env::var("LASSO_BENCH_RUNNER_BIN") {
        return Ok((PathBuf::from(path), "LASSO_BENCH_RUNNER_BIN"));
    }
    let candidates = [
        (
            repo().join("target/lambda/runner/bootstrap"),
            "release, `make build-lambda`",
        ),
        (target_dir().join("release/runner"), "release"),
        (
            target_dir().join("debug/runner"),
            "debug build (not release)",
        ),
    ];
    candidates
        .into_iter()
        .find(|(path, _)| path.is_file())
        .ok_or_else(|| {
            anyhow::anyhow!(
                "no runner binary: build it with `cargo build --release -p lasso-runner --bin runner` or set LASSO_BENCH_RUNNER_BIN"
            )
        })
}

fn stats(mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort();
    let p50 = samples[samples.len() / 2];
    let mean = samples.iter().sum::<Duration>() / samples.len() as u32;
    (p50, mean)
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

/// One start of the runner, timed to its first `invocation/next` request.
async fn runner_once(binary: &Path, database_url: &str) -> anyhow::Result<Duration> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let api = listener.local_addr()?.to_string();
    let mut command = tokio::process::Command::new(binary);
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AWS_LAMBDA_RUNTIME_API", &api)
        .env("AWS_LAMBDA_FUNCTION_NAME", "lasso-runner")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1024")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/lasso-runner")
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "bench")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "bench")
        .env("AWS_SECRET_ACCESS_KEY", "bench")
        .env("LASSO_DATABASE_URL", database_url)
        .env("LASSO_ENCRYPTION_KEY", KEY)
        .env("LASSO_SCRIPT_STORE", "s3://lasso-bench-scripts")
        .env("LASSO_TASK_TRANSPORT", "sqs")
        // Never contacted: Lambda's event source mapping feeds the runner.
        .env(
            "LASSO_RUNNER_QUEUE_URL",
            "http://127.0.0.1:9/000000000000/lasso-runner",
        )
        .env("LASSO_LOG_FORMAT", "json")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let started = Instant::now();
    let mut child = command.spawn()?;
    let ready = async {
        loop {
            let (stream, _) = listener.accept().await?;
            let mut line = String::new();
            BufReader::new(stream).read_line(&mut line).await?;
            if line.starts_with("GET /2018-06-01/runtime/invocation/next") {
                return Ok::<_, anyhow::Error>(started.elapsed());
            }
        }
    };
    let elapsed = tokio::select! {
        ready = ready => ready?,
        exited = child.wait() => {
            let mut err = String::new();
            if let Some(mut stderr) = child.stderr.take() {
                tokio::io::AsyncReadExt::read_to_string(&mut stderr, &mut err).await?;
            }
            anyhow::bail!("the runner exited ({}) before asking for a task: {err}", exited?);
        }
        _ = tokio::time::sleep(Duration::from_secs(30)) => anyhow::bail!("the runner did not ask for a task within 30 s"),
    };
    child.kill().await?;
    Ok(elapsed)
}

async fn node_once() -> anyhow::Result<Duration> {
    let started = Instant::now();
    let status = tokio::process::Command::new("node")
        .args(["-e", "0"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .await?;
    anyhow::ensure!(status.success(), "node -e 0: {status}");
    Ok(started.elapsed())
}

fn size(path: &Path) -> String {
    match std::fs::metadata(path) {
        Ok(m) => format!("{:.1} MiB", m.len() as f64 / 1048576.0),
        Err(_) => "not built".to_string(),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let database_url = std::env::var("LASSO_BENCH_DATABASE_URL").map_err(|_| {
        anyhow::anyhow!("LASSO_BENCH_DATABASE_URL is not set (scripts/bench sets it)")
    })?;
    let (binary, build) = runner_binary()?;
    let node_version = String::from_utf8(
        tokio::process::Command::new("node")
            .arg("--version")
            .output()
            .await?
            .stdout,
    )?;

    // Warm the page cache for both, then alternate so load on the machine hits both alike.
    runner_once(&binary, &database_url).await?;
    node_once().await?;
    let (mut runner, mut node) = (Vec::new(), Vec::new());
    for _ in 0..RUNS {
        runner.push(runner_once(&binary, &database_url).await?);
        node.push(node_once().await?);
    }
    let (runner_p50, runner_mean) = stats(runner);
    let (node_p50, node_mean) = stats(node);

    println!("| cold start, {RUNS} starts each, alternating | p50 | mean | vs Node (p50) |");
    println!("| --- | ---: | ---: | ---: |");
    println!(
        "| runner: spawn → first `invocation/next` request ({build}, {}) | {} | {} | {:.2} |",
        size(&binary),
        ms(runner_p50),
        ms(runner_mean),
        runner_p50.as_secs_f64() / node_p50.as_secs_f64()
    );
    println!(
        "| `node -e 0` ({}): spawn → exit | {} | {} | 1.00 |",
        node_version.trim(),
        ms(node_p50),
        ms(node_mean)
    );
    println!();
    println!(
        "Target: a fifth of Node's time or less ({}).",
        if runner_p50.as_secs_f64() <= node_p50.as_secs_f64() / 5.0 {
            "met"
        } else {
            "missed"
        }
    );
    println!();
    println!("| release binary | size |");
    println!("| --- | ---: |");
    for function in ["api", "scheduler", "dispatcher", "runner"] {
        let lambda = repo()
            .join("target/lambda")
            .join(function)
            .join("bootstrap");
        let (path, built_by) = if lambda.is_file() {
            (lambda, "`make build-lambda`, target/lambda")
        } else {
            (
                target_dir().join("release").join(function),
                "`cargo build --release`",
            )
        };
        println!("| {function} ({built_by}) | {} |", size(&path));
    }
    Ok(())
}
