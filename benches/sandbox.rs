//! The sandbox's cost per execution: a fresh QuickJS runtime and context, the SDK, a small
//! async script that maps 100 objects and hands them to `nango.batchSave` — compared in the same
//! run with Node's `vm` module doing the same (Nango's method, benches/node/vm_bench.mjs).
//! Memory per live context is compared too, and the floor under any QuickJS sandbox: a fresh
//! runtime and context alone, with no SDK and no script. Prints a Markdown table.

// The runner's allocator, so the figures are the runner's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use async_trait::async_trait;
use lasso_sandbox::{self as sandbox, BatchOp, Host, HostError, Limits, RunInfo, Sandbox};
use lasso_services::logs::Level;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const ITERATIONS: usize = 2_000;
const HELD: usize = 500;

const SCRIPT: &str = "export default async function (nango, input) {
    await nango.batchSave(input.items.map((i) => ({ ...i, seen: true })), 'Item');
}";

#[derive(Default)]
struct CountingHost(AtomicUsize);

#[async_trait]
impl Host for CountingHost {
    async fn call(&self, _op: &str, _args: Value) -> Result<Value, HostError> {
        Ok(Value::Null)
    }

    async fn batch(
        &self,
        _op: BatchOp,
        _model: &str,
        records: Vec<Value>,
    ) -> Result<(), HostError> {
        self.0.fetch_add(records.len(), Ordering::Relaxed);
        Ok(())
    }

    fn log(&self, _level: Level, _message: &str) {}
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

fn node_modules_dir() -> std::path::PathBuf {
    let cache = std::env::var("LASSO_CACHE_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| {
            std::path::PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/lasso")
        });
    cache.join("node")
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let items: Vec<Value> = (0..100)
        .map(|i| json!({"id": format!("item-{i}"), "title": format!("Item {i}"), "n": i, "tags": ["a", "b"]}))
        .collect();
    let input = json!({ "items": items });
    let bundle = sandbox::single_module(SCRIPT);
    let host = Arc::new(CountingHost::default());
    let limits = Limits::default();
    let once = || {
        sandbox::run(
            &bundle,
            Some(input.clone()),
            RunInfo::default(),
            host.clone(),
            limits,
            CancellationToken::new(),
        )
    };
    for _ in 0..200 {
        once().await.map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    let start = Instant::now();
    for _ in 0..ITERATIONS {
        once().await.map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    let lasso_us = start.elapsed().as_secs_f64() * 1e6 / ITERATIONS as f64;

    let start = Instant::now();
    for _ in 0..ITERATIONS {
        Sandbox::new(&bundle, limits, CancellationToken::new())
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    let floor_us = start.elapsed().as_secs_f64() * 1e6 / ITERATIONS as f64;
    anyhow::ensure!(
        host.0.load(Ordering::Relaxed) == 100 * (ITERATIONS + 200),
        "every run saved its records"
    );

    // Memory held by live sandboxes that have run the script (runtime, context, SDK, modules).
    let before = rss_kib();
    let mut kept = Vec::with_capacity(HELD);
    for _ in 0..HELD {
        let sandbox = Sandbox::new(&bundle, limits, CancellationToken::new())
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        sandbox
            .execute(Some(input.clone()), RunInfo::default(), host.clone())
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        // As node/vm_bench.mjs collects garbage before it measures.
        sandbox.collect_garbage().await;
        kept.push(sandbox);
    }
    let lasso_kib = (rss_kib() - before) as f64 / HELD as f64;
    drop(kept);

    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("node/vm_bench.mjs");
    let out = std::process::Command::new("node")
        .arg("--expose-gc")
        .arg(&script)
        .arg(ITERATIONS.to_string())
        .arg(HELD.to_string())
        .current_dir(node_modules_dir())
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "node: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let node: Value = serde_json::from_slice(&out.stdout)?;
    let node_us = node["per_execution_us"].as_f64().unwrap_or(f64::NAN);
    let node_kib = node["per_context_kib"].as_f64().unwrap_or(f64::NAN);
    // A reading at or below zero means Node's heap shrank between the two readings; a ratio
    // to it would call any figure of Lasso's "met".
    anyhow::ensure!(
        node_kib > 0.0,
        "Node's memory per live context read {node_kib} KiB: not a measurement"
    );

    println!(
        "| fresh sandbox + small async script (100 objects -> batchSave), {ITERATIONS} runs | Lasso (QuickJS) | Node {} `vm` | Lasso / Node |",
        node["node"].as_str().unwrap_or("?")
    );
    println!("| --- | ---: | ---: | ---: |");
    println!(
        "| time per execution | {lasso_us:.0} µs | {node_us:.0} µs | {:.2} |",
        lasso_us / node_us
    );
    println!(
        "| floor: a fresh QuickJS runtime + context alone (no SDK, no script) | {floor_us:.0} µs | | {:.2} |",
        floor_us / node_us
    );
    println!(
        "| memory per live context ({HELD} held) | {lasso_kib:.0} KiB | {node_kib:.0} KiB | {:.2} |",
        lasso_kib / node_kib
    );
    let verdict = |ok: bool| if ok { "met" } else { "missed" };
    println!();
    println!(
        "Targets (issue #18): at most 0.5× Node's time ({}) and at most 1× its memory per live context ({}); a tenth of its time the stretch ({}). The floor row is what no sandbox with a fresh QuickJS context per run can go below.",
        verdict(lasso_us / node_us <= 0.5),
        verdict(lasso_kib / node_kib <= 1.0),
        verdict(lasso_us / node_us <= 0.1),
    );
    zod_rows(&input, host.clone(), limits, lasso_us).await?;
    Ok(())
}

/// A sync-like script with a zod model (zod loaded into each fresh context from cached
/// bytecode) next to the trivial script above and to Node's `vm` evaluating zod fresh in each
/// context (node/vm_zod_bench.mjs): isolation on both sides.
async fn zod_rows(
    input: &Value,
    host: Arc<CountingHost>,
    limits: Limits,
    trivial_us: f64,
) -> anyhow::Result<()> {
    const ZOD_ITERATIONS: usize = 500;
    let bundle = sandbox::single_module(ZOD_SCRIPT);
    let once = || {
        sandbox::run(
            &bundle,
            Some(input.clone()),
            RunInfo::default(),
            host.clone(),
            limits,
            CancellationToken::new(),
        )
    };
    for _ in 0..50 {
        once().await.map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    let start = Instant::now();
    for _ in 0..ZOD_ITERATIONS {
        once().await.map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    let zod_us = start.elapsed().as_secs_f64() * 1e6 / ZOD_ITERATIONS as f64;

    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = std::process::Command::new("node")
        .arg(root.join("node/vm_zod_bench.mjs"))
        .arg(ZOD_ITERATIONS.to_string())
        .arg(root.join("../sandbox-js/node_modules/zod"))
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "node: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let node: Value = serde_json::from_slice(&out.stdout)?;
    let node_us = node["per_execution_us"].as_f64().unwrap_or(f64::NAN);
    println!();
    println!(
        "| zod-model sync (zod loaded, 100 objects parsed -> batchSave), {ZOD_ITERATIONS} runs, fresh context each | Lasso (QuickJS) | Node {} `vm`, zod evaluated per context | Lasso / Node |",
        node["node"].as_str().unwrap_or("?")
    );
    println!("| --- | ---: | ---: | ---: |");
    println!(
        "| time per execution | {zod_us:.0} µs | {node_us:.0} µs | {:.2} |",
        zod_us / node_us
    );
    println!("| the trivial script above, same run | {trivial_us:.0} µs | | |");
    println!(
        "| cost of loading zod per run (zod-model − trivial) | {:.0} µs | | |",
        zod_us - trivial_us
    );
    Ok(())
}

const ZOD_SCRIPT: &str = r#"import { z } from 'zod';
const Item = z.object({ id: z.string(), title: z.string(), n: z.number().int(), tags: z.array(z.string()) });
export default async function (nango, input) {
    await nango.batchSave(input.items.map((i) => Item.parse(i)), 'Item');
}
"#;
