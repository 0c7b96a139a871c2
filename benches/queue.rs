//! Queue throughput: no-op tasks enqueued → claimed → completed through Lasso's queue on the
//! local transport, against graphile-worker (benches/node/graphile_bench.mjs) with its default
//! settings and with its batching options, on the same Postgres, in the same run.
//!
//! Lasso's side is the path a task takes in `lasso dev`, without the script: `tasks::insert`
//! (1000 per statement), dispatcher rounds (`dispatcher::dispatch_once`: claim with SKIP LOCKED
//! under the group locks, send to the in-process transport), and runner loops fed by the same
//! event-source pump as `lasso dev` (receive up to 10, invoke, delete) whose invoke does the
//! runner's queue transitions for each message and nothing else, as graphile-worker's jobs are
//! no-ops. Two forms of the transitions are measured: one `start` and one `succeed` per task
//! (what the runner function did around each script), and `start_many` / `succeed_many`
//! (one statement each per batch), with batches of 10 (SQS's receive limit and the template's
//! `BatchSize`) and of 100 (an event source mapping with a batching window gathers more).
//! One runner loop, as `lasso dev` runs (more loops gained nothing on 2 cores). Every run
//! checks that each task succeeded exactly once.
//!
//! `LASSO_BENCH_DATABASE_URL` names the cluster; `LASSO_BENCH_QUEUE_TASKS` the number of tasks
//! per run (default 10000). Prints a Markdown table.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use futures::StreamExt;
use lasso_cli::event_source::{self, Mapping};
use lasso_services::queue::{NewTask, Payload, TaskKind, TaskMessage, tasks};
use lasso_services::{Context, dispatcher, environments};
use serde_json::Value;

mod support;

const ENQUEUE_BATCH: usize = 1_000;
/// graphile-worker's `concurrency`: the runner's per-invocation concurrency (functions/runner's
/// CONCURRENCY) and the template's batch size are 10 too.
const CONCURRENCY: usize = 10;

#[derive(Clone, Copy, PartialEq)]
enum Transitions {
    PerTask,
    Batched,
}

fn node_dir() -> std::path::PathBuf {
    let cache = std::env::var("LASSO_CACHE_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| {
            std::path::PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/lasso")
        });
    cache.join("node")
}

/// The runner's transitions for one batch of deliveries, with a no-op in place of the script.
/// Returns how many tasks this batch completed.
async fn complete(
    ctx: &Context,
    event: SqsEvent,
    transitions: Transitions,
) -> anyhow::Result<usize> {
    let ids = event
        .records
        .iter()
        .map(|r| {
            let body = r.body.as_deref().unwrap_or_default();
            Ok(serde_json::from_str::<TaskMessage>(body)?.task_id)
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let group = ctx.config.runner_group.as_str();
    match transitions {
        Transitions::PerTask => {
            let done = futures::stream::iter(ids)
                .map(|id| async move {
                    match tasks::start(&ctx.db, id, group).await? {
                        Some(task) => Ok::<_, anyhow::Error>(
                            tasks::succeed(&ctx.db, task.id, &Value::Null)
                                .await?
                                .is_some() as usize,
                        ),
                        None => Ok(0),
                    }
                })
                .buffer_unordered(CONCURRENCY)
                .collect::<Vec<_>>()
                .await;
            done.into_iter().sum()
        }
        Transitions::Batched => {
            let started = tasks::start_many(&ctx.db, &ids, group).await?;
            let outputs: Vec<(uuid::Uuid, Value)> =
                started.iter().map(|t| (t.id, Value::Null)).collect();
            Ok(tasks::succeed_many(&ctx.db, &outputs).await?.len())
        }
    }
}

/// One Lasso run: the loops start idle, then `n` tasks are enqueued; the clock stops when the
/// last one has succeeded.
async fn lasso(
    admin: &str,
    n: usize,
    transitions: Transitions,
    runner_loops: usize,
    batch_size: usize,
) -> anyhow::Result<Duration> {
    let extra = [
        // graphile-worker's jobs without a queue name have no per-group limit; neither should
        // the one environment here (the default of 20 would measure the limit, not the queue).
        ("LASSO_ENVIRONMENT_CONCURRENCY", "1000".to_string()),
        (
            "LASSO_DB_MAX_CONNECTIONS",
            (runner_loops * CONCURRENCY + 4).to_string(),
        ),
    ];
    let (ctx, _dir) = support::lasso(admin, None, &extra).await?;
    let (env, _) = environments::create(&ctx.db, "bench").await?;

    let stop = Arc::new(AtomicBool::new(false));
    let completed = Arc::new(AtomicUsize::new(0));
    let mut loops = tokio::task::JoinSet::new();
    {
        let (ctx, stop) = (ctx.clone(), stop.clone());
        // Rounds back to back while there is work; a round that claims nothing pauses 2 ms
        // (`lasso dev` pauses 100 ms, for an idle machine rather than a backlog).
        loops.spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let report = dispatcher::dispatch_once(&ctx).await?;
                if report.claimed == 0 {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }
            Ok::<_, anyhow::Error>(())
        });
    }
    let mapping = Mapping {
        batch_size,
        wait: Duration::from_millis(20),
        ..Mapping::default()
    };
    for _ in 0..runner_loops {
        let (ctx, stop, completed, mapping) = (
            ctx.clone(),
            stop.clone(),
            completed.clone(),
            mapping.clone(),
        );
        loops.spawn(async move {
            let queue = ctx.transport();
            while !stop.load(Ordering::Relaxed) {
                event_source::pump_once(queue.as_ref(), &mapping, |event| {
                    let (ctx, completed) = (ctx.clone(), completed.clone());
                    async move {
                        completed.fetch_add(
                            complete(&ctx, event, transitions).await?,
                            Ordering::Relaxed,
                        );
                        Ok(SqsBatchResponse::default())
                    }
                })
                .await?;
            }
            Ok(())
        });
    }

    let new: Vec<NewTask> = (0..n)
        .map(|_| {
            NewTask::new(
                env.id,
                TaskKind::Script,
                "noop",
                Payload::script("noop.js", Value::Null),
            )
        })
        .collect();
    let started = Instant::now();
    for chunk in new.chunks(ENQUEUE_BATCH) {
        tasks::insert(&ctx.db, chunk).await?;
    }
    while completed.load(Ordering::Relaxed) < n {
        if let Some(Ok(Err(e))) = loops.try_join_next() {
            return Err(e);
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    while let Some(joined) = loops.join_next().await {
        joined??;
    }
    let (succeeded, total): (i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE state = 'SUCCEEDED'), count(*) FROM queue.tasks",
    )
    .fetch_one(&ctx.db)
    .await?;
    anyhow::ensure!(
        succeeded as usize == n && total as usize == n && completed.load(Ordering::Relaxed) == n,
        "{succeeded} of {total} tasks succeeded, {} completions counted, {n} expected",
        completed.load(Ordering::Relaxed)
    );
    Ok(elapsed)
}

struct Graphile {
    seconds: f64,
    version: String,
}

async fn graphile(admin: &str, n: usize, mode: &str) -> anyhow::Result<Graphile> {
    let database_url = support::fresh_database(admin).await?;
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("node/graphile_bench.mjs");
    let out = tokio::process::Command::new("node")
        .arg(script)
        .arg(node_dir().join("node_modules"))
        .arg(&database_url)
        .arg(n.to_string())
        .arg(mode)
        .arg(CONCURRENCY.to_string())
        .output()
        .await?;
    anyhow::ensure!(
        out.status.success(),
        "graphile-worker ({mode}): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let result: Value = serde_json::from_slice(&out.stdout)?;
    anyhow::ensure!(
        result["completed"].as_u64() == Some(n as u64),
        "graphile-worker ({mode}) completed {} of {n} jobs",
        result["completed"]
    );
    Ok(Graphile {
        seconds: result["seconds"].as_f64().unwrap_or(f64::NAN),
        version: result["version"].as_str().unwrap_or("?").to_string(),
    })
}

fn met(ok: bool) -> &'static str {
    if ok { "met" } else { "missed" }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let admin = support::admin_url()?;
    let n: usize = match std::env::var("LASSO_BENCH_QUEUE_TASKS") {
        Ok(v) => v
            .parse()
            .map_err(|_| anyhow::anyhow!("LASSO_BENCH_QUEUE_TASKS must be a number, got `{v}`"))?,
        Err(_) => 10_000,
    };
    let rate = |d: f64| n as f64 / d;

    let gw_default = graphile(&admin, n, "default").await?;
    let gw_batched = graphile(&admin, n, "batched").await?;
    let per_task = lasso(&admin, n, Transitions::PerTask, 1, 10).await?;
    let batched = lasso(&admin, n, Transitions::Batched, 1, 10).await?;
    let batched_100 = lasso(&admin, n, Transitions::Batched, 1, 100).await?;

    let base = rate(gw_default.seconds);
    let row = |name: &str, per_sec: f64| {
        println!("| {name} | {per_sec:.0} | {:.2} |", per_sec / base);
    };
    println!(
        "| no-op tasks, {n} enqueued (1000 per statement) → claimed → completed, clock from the first enqueue to the last completion | tasks/s | vs graphile-worker default |"
    );
    println!("| --- | ---: | ---: |");
    row(
        &format!(
            "graphile-worker {}, default settings, concurrency {CONCURRENCY}",
            gw_default.version
        ),
        base,
    );
    row(
        &format!(
            "graphile-worker {}, batched (`localQueue.size` 500, `completeJobBatchDelay` 0, `failJobBatchDelay` 0), concurrency {CONCURRENCY}",
            gw_batched.version
        ),
        rate(gw_batched.seconds),
    );
    row(
        "Lasso, `start` + `succeed` per task (the runner function before `start_many`), batches of 10",
        rate(per_task.as_secs_f64()),
    );
    row(
        "Lasso, `start_many` + `succeed_many`, batches of 10 (the template's `BatchSize`, `lasso dev`)",
        rate(batched.as_secs_f64()),
    );
    row(
        "Lasso, `start_many` + `succeed_many`, batches of 100 (gathered from 10 receives)",
        rate(batched_100.as_secs_f64()),
    );
    let best = rate(batched.as_secs_f64()).max(rate(batched_100.as_secs_f64()));
    println!();
    println!(
        "Targets, for the faster of Lasso's batched rows: at least 3× graphile-worker's default throughput ({}) and at least its batched throughput ({}).",
        met(best >= 3.0 * base),
        met(best >= rate(gw_batched.seconds)),
    );
    Ok(())
}
