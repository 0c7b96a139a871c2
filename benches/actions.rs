//! Action round-trip latency in `lasso dev` mode: the api, the in-process task transport and the
//! scheduler, dispatcher and runner loops in one process (as `lasso dev` runs them), a trivial
//! action deployed from benches/fixtures/echo-project, called over HTTP one call after another.
//! The same script run alone in a fresh sandbox is measured in the same run, so the difference
//! is Lasso's overhead: HTTP, the queue (insert, dispatch, claim, complete), loading the
//! connection and function, and waking the waiting request. Both wait modes are measured.
//!
//! `LASSO_BENCH_DATABASE_URL` names the cluster (scripts/bench starts one with default
//! settings, fsync on); `LASSO_BENCH_ACTION_WAITS`, the wait modes measured (default
//! `listen,poll`; one mode alone for a profile of it). Prints a Markdown table.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use lasso_cli::workers::Workers;
use lasso_sandbox::{self as sandbox, BatchOp, Host, HostError, Limits, RunInfo};
use lasso_services::environments;
use lasso_services::logs::Level;
use lasso_services::scripts::{self, Bundle, DeployRequest};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

mod support;

const CALLS: usize = 1_000;
const WARMUP: usize = 100;
const PROVIDERS: &str = "bench-api:\n  display_name: Bench\n  auth_mode: API_KEY\n  proxy:\n    base_url: http://127.0.0.1:9\n    headers:\n      authorization: Bearer ${apiKey}\n";

fn project() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/echo-project")
}

struct Stats {
    p50: Duration,
    p99: Duration,
    mean: Duration,
}

fn stats(mut samples: Vec<Duration>) -> Stats {
    samples.sort();
    let at = |q| support::quantile(&samples, q);
    Stats {
        p50: at(0.50),
        p99: at(0.99),
        mean: samples.iter().sum::<Duration>() / samples.len() as u32,
    }
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

/// A host for the script alone: the echo action calls nothing.
struct NoHost;

#[async_trait]
impl Host for NoHost {
    async fn call(&self, _op: &str, _args: Value) -> Result<Value, HostError> {
        Ok(Value::Null)
    }
    async fn batch(
        &self,
        _op: BatchOp,
        _model: &str,
        _records: Vec<Value>,
    ) -> Result<(), HostError> {
        Ok(())
    }
    fn log(&self, _level: Level, _message: &str) {}
}

async fn script_alone(bundle: &Bundle) -> anyhow::Result<Vec<Duration>> {
    let host: Arc<dyn Host> = Arc::new(NoHost);
    let mut samples = Vec::with_capacity(CALLS);
    for i in 0..WARMUP + CALLS {
        let started = Instant::now();
        sandbox::run(
            bundle,
            Some(json!({"n": i})),
            RunInfo::default(),
            host.clone(),
            Limits::default(),
            CancellationToken::new(),
        )
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        if i >= WARMUP {
            samples.push(started.elapsed());
        }
    }
    Ok(samples)
}

/// A fresh database, `lasso dev`'s loops and the api on a local port, the project deployed;
/// then `CALLS` sequential `POST /action/trigger` measured from the HTTP client.
async fn round_trips(admin: &str, wait_mode: &str) -> anyhow::Result<Vec<Duration>> {
    let extra = [
        ("LASSO_ACTION_WAIT", wait_mode.to_string()),
        // The bench's fake provider listens on loopback.
        ("LASSO_OUTBOUND_ALLOW", "127.0.0.0/8,::1/128".to_string()),
    ];
    let (ctx, _dir) = support::lasso(admin, Some(PROVIDERS), &extra).await?;
    let (env, key) = environments::create(&ctx.db, "bench").await?;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let router = lasso_api::router(ctx.clone());
    tokio::spawn(async move { axum::serve(listener, router).await });
    let http = reqwest::Client::new();
    let post = |path: &str, body: Value| {
        http.post(format!("{base}{path}"))
            .bearer_auth(&key)
            .json(&body)
            .send()
    };
    post(
        "/integrations",
        json!({"provider": "bench-api", "unique_key": "bench"}),
    )
    .await?
    .error_for_status()?;
    post(
        "/connections",
        json!({"provider_config_key": "bench", "connection_id": "c1",
               "credentials": {"type": "API_KEY", "apiKey": "k"}}),
    )
    .await?
    .error_for_status()?;
    scripts::deploy(
        &ctx.db,
        ctx.scripts.as_ref(),
        env.id,
        DeployRequest {
            integration: None,
            functions: lasso_compile::compile(&project())?.functions,
        },
    )
    .await?;
    let workers = Workers::start(ctx.clone());

    let mut samples = Vec::with_capacity(CALLS);
    for i in 0..WARMUP + CALLS {
        let started = Instant::now();
        let response = http
            .post(format!("{base}/action/trigger"))
            .bearer_auth(&key)
            .header("Connection-Id", "c1")
            .header("Provider-Config-Key", "bench")
            .json(&json!({"action_name": "echo", "input": {"n": i}}))
            .send()
            .await?;
        let status = response.status();
        let body: Value = response.json().await?;
        if i >= WARMUP {
            samples.push(started.elapsed());
        }
        anyhow::ensure!(
            status == 200 && body == json!({"echo": {"n": i}}),
            "call {i} answered {status}: {body}"
        );
    }
    workers.stop().await;
    Ok(samples)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let admin = support::admin_url()?;
    let compiled = lasso_compile::compile(&project())?;
    let bundle = Bundle::parse(&compiled.functions[0].bundle).map_err(|e| anyhow::anyhow!(e))?;

    let modes = std::env::var("LASSO_BENCH_ACTION_WAITS").unwrap_or_else(|_| "listen,poll".into());
    let script = stats(script_alone(&bundle).await?);
    let mut measured = Vec::new();
    for mode in modes.split(',').map(str::trim) {
        anyhow::ensure!(
            matches!(mode, "listen" | "poll"),
            "LASSO_BENCH_ACTION_WAITS: `{mode}` is not a wait mode (expected listen or poll)"
        );
        measured.push((mode, stats(round_trips(&admin, mode).await?)));
    }

    println!("| trivial action, {CALLS} sequential calls | p50 | p99 | mean |");
    println!("| --- | ---: | ---: | ---: |");
    println!(
        "| the script alone, fresh sandbox each run | {} | {} | {} |",
        ms(script.p50),
        ms(script.p99),
        ms(script.mean)
    );
    for (mode, s) in &measured {
        let name = match *mode {
            "listen" => "`LASSO_ACTION_WAIT=listen` (default)",
            _ => "`LASSO_ACTION_WAIT=poll`",
        };
        println!(
            "| `POST /action/trigger` round trip, `lasso dev`, {name} | {} | {} | {} |",
            ms(s.p50),
            ms(s.p99),
            ms(s.mean)
        );
        println!(
            "| Lasso's overhead (round trip − script), {name} | {} | {} | {} |",
            ms(s.p50.saturating_sub(script.p50)),
            ms(s.p99.saturating_sub(script.p99)),
            ms(s.mean.saturating_sub(script.mean))
        );
    }
    if let Some((_, listen)) = measured.iter().find(|(mode, _)| *mode == "listen") {
        let met = |overhead: Duration, target| if overhead < target { "met" } else { "missed" };
        println!();
        println!(
            "Targets for the overhead (issue #18): p50 under 3 ms, p99 under 10 ms (listen mode: {} and {}).",
            met(
                listen.p50.saturating_sub(script.p50),
                Duration::from_millis(3)
            ),
            met(
                listen.p99.saturating_sub(script.p99),
                Duration::from_millis(10)
            ),
        );
    }
    Ok(())
}
