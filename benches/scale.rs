//! Scheduled syncs at scale on `lasso dev`: N connections, each with a sync that runs every 30
//! seconds (a trivial script, benches/fixtures/scale-project: it calls no provider), served by
//! the `lasso dev` binary itself (its scheduler, dispatcher and runner loops and the Postgres
//! log sink, as a user runs it) on a fresh database of the bench's Postgres.
//!
//! The schedules' first runs are spread evenly over one period, as connections made at
//! different times are, so the load is N/30 runs a second rather than N at once. For each run
//! due in the measured window: the scheduling lag (due → the runner starts it); a run that was
//! never created (its schedule's previous run was still going) or not started by the end
//! counts as late beyond any bound. Sustained tasks/s counts sync tasks completed in the window;
//! CPU seconds per task are the `lasso dev` process's and the Postgres cluster's (its backends,
//! the postmaster and what it reaped) over the window, from /proc.
//!
//! Then the knee: the same with more schedules (or fewer, when the first step missed) in
//! shorter windows, to find where lag p99 passes 5 s.
//!
//! `lasso dev` gets the bench's environment, so Lasso settings (`LASSO_ENVIRONMENT_CONCURRENCY`:
//! every connection here is in one environment) apply to it.
//!
//! Settings: `LASSO_BENCH_DATABASE_URL` (scripts/bench sets it); `LASSO_BENCH_SCALE_SECS`, the
//! first step's window (default 120); `LASSO_BENCH_SCALE_KNEE_SECS`, the knee steps' windows
//! (default 60); `LASSO_BENCH_SCALE_SCHEDULES`, the first step's schedules (default 10,000);
//! `LASSO_BENCH_LASSO_BIN`, the `lasso` binary (default: the one of the bench's own build
//! profile in `$CARGO_TARGET_DIR`). Prints Markdown.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use futures::StreamExt;
use lasso_services::connections::{self, NewConnection};
use lasso_services::integrations::{self, NewIntegration};
use lasso_services::queue::schedules::{self, ReconcileScope};
use lasso_services::scripts::{self, DeployRequest};
use lasso_services::{Context, environments};
use secrecy::ExposeSecret;
use serde_json::json;

mod support;

/// The sync's frequency (`runs: every 30s`).
const PERIOD_SECS: i64 = 30;
/// Lag p99 past this is the knee.
const TARGET_P99: Duration = Duration::from_secs(5);
/// Time before the measured window: `lasso dev` starts, pools and caches warm up, the first
/// round of runs spreads over the period.
const WARMUP: Duration = Duration::from_secs(30);
/// After the window, how long runs due in it still have to start.
const DRAIN: Duration = Duration::from_secs(30);
/// Clock ticks per second in /proc/<pid>/stat (USER_HZ, 100 on Linux).
const TICKS_PER_SEC: f64 = 100.0;
const PROVIDERS: &str = "bench-api:\n  display_name: Bench\n  auth_mode: API_KEY\n  proxy:\n    base_url: http://127.0.0.1:9\n";

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> anyhow::Result<T> {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .map_err(|_| anyhow::anyhow!("{name}: `{v}` is not a valid number")),
        Err(_) => Ok(default),
    }
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The `lasso` binary of the bench's own build profile: a release bench measures a release
/// `lasso dev` (scripts/bench builds it).
fn lasso_binary() -> anyhow::Result<PathBuf> {
    if let Ok(bin) = std::env::var("LASSO_BENCH_LASSO_BIN") {
        return Ok(bin.into());
    }
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| repo().join("target"));
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    let bin = target.join(profile).join("lasso");
    anyhow::ensure!(
        bin.exists(),
        "{} is missing: build it with `cargo build -p lasso-cli --bin lasso{}` or set LASSO_BENCH_LASSO_BIN",
        bin.display(),
        if profile == "release" {
            " --release"
        } else {
            ""
        }
    );
    Ok(bin)
}

/// utime + stime (+ the reaped children's, when `children`) of `pid`, and its parent's pid.
fn proc_cpu(pid: u32, children: bool) -> Option<(f64, u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces: fields are counted from after its closing parenthesis.
    let fields: Vec<&str> = stat[stat.rfind(')')? + 2..].split(' ').collect();
    let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<f64>().ok());
    let mut ticks = field(14)? + field(15)?;
    if children {
        ticks += field(16)? + field(17)?;
    }
    Some((ticks / TICKS_PER_SEC, field(4)? as u32))
}

/// CPU seconds used so far by the Postgres cluster whose postmaster is `postmaster`: it, what
/// it reaped (backends that exited) and its live children.
fn postgres_cpu(postmaster: u32) -> f64 {
    let mut total = proc_cpu(postmaster, true).map_or(0.0, |(cpu, _)| cpu);
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        if let Some((cpu, parent)) = proc_cpu(pid, false)
            && parent == postmaster
        {
            total += cpu;
        }
    }
    total
}

/// What `lasso dev` is started with; its database is the bench's.
struct Setup {
    ctx: Context,
    dir: tempfile::TempDir,
    integration: integrations::Integration,
    connections: usize,
    postmaster: u32,
}

impl Setup {
    async fn new(admin: &str) -> anyhow::Result<Self> {
        let (ctx, dir) = support::lasso(admin, Some(PROVIDERS), &[]).await?;
        let (env, _key) = environments::create(&ctx.db, "bench").await?;
        let integration = integrations::create(
            &ctx.db,
            &ctx.cipher,
            env.id,
            NewIntegration {
                unique_key: "bench".into(),
                provider: "bench-api".into(),
                ..NewIntegration::default()
            },
        )
        .await?;
        scripts::deploy(
            &ctx.db,
            ctx.scripts.as_ref(),
            env.id,
            DeployRequest {
                integration: None,
                functions: lasso_compile::compile(&repo().join("benches/fixtures/scale-project"))?
                    .functions,
            },
        )
        .await?;
        let backend: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
            .fetch_one(&ctx.db)
            .await?;
        let postmaster = proc_cpu(backend as u32, false)
            .ok_or_else(|| anyhow::anyhow!("Postgres backend {backend} is not in /proc: the bench needs Postgres on this machine"))?
            .1;
        Ok(Self {
            ctx,
            dir,
            integration,
            connections: 0,
            postmaster,
        })
    }

    /// Connections (each gets the sync's schedule) up to `n`.
    async fn connect_up_to(&mut self, n: usize) -> anyhow::Result<()> {
        if n <= self.connections {
            return Ok(());
        }
        let (ctx, integration) = (&self.ctx, &self.integration);
        let results: Vec<_> = futures::stream::iter(self.connections..n)
            .map(|i| async move {
                let credentials =
                    serde_json::from_value(json!({"type": "API_KEY", "apiKey": "k"}))?;
                connections::upsert(
                    &ctx.db,
                    &ctx.cipher,
                    integration,
                    NewConnection {
                        connection_id: format!("c{i}"),
                        credentials,
                        connection_config: Default::default(),
                        secret_config: Vec::new(),
                        metadata: None,
                        end_user: None,
                        tags: Default::default(),
                        webhook_url_override: None,
                    },
                )
                .await?;
                Ok::<_, anyhow::Error>(())
            })
            .buffer_unordered(8)
            .collect()
            .await;
        results.into_iter().collect::<anyhow::Result<Vec<_>>>()?;
        self.connections = n;
        schedules::reconcile(&self.ctx.db, ReconcileScope::default()).await?;
        Ok(())
    }

    /// Between steps: `n` schedules STARTED, the others paused; no run left active (a run the
    /// stopped `lasso dev` left behind would block its schedule); the first runs spread evenly
    /// over one period from `start_in` on.
    async fn reset(&self, n: usize, start_in: Duration) -> anyhow::Result<()> {
        sqlx::query(
            "UPDATE queue.tasks SET state = 'CANCELLED', completed_at = now()
             WHERE state IN ('CREATED', 'DISPATCHED', 'STARTED')",
        )
        .execute(&self.ctx.db)
        .await?;
        // Steps below the connections made so far pause the schedules beyond theirs.
        sqlx::query(
            "UPDATE queue.schedules s
             SET state = CASE WHEN o.n < $1 THEN 'STARTED' ELSE 'PAUSED' END::queue.schedule_state
             FROM (SELECT id, row_number() OVER (ORDER BY connection_id) - 1 AS n
                   FROM queue.schedules WHERE state <> 'DELETED') o
             WHERE s.id = o.id",
        )
        .bind(n as i64)
        .execute(&self.ctx.db)
        .await?;
        sqlx::query(
            "UPDATE queue.schedules s
             SET next_execution_at = date_trunc('second', now()) + make_interval(secs => $1)
                 + make_interval(secs => floor(o.n * $2 / o.total)::double precision / 1000)
             FROM (SELECT id, row_number() OVER (ORDER BY id) - 1 AS n, count(*) OVER () AS total
                   FROM queue.schedules WHERE state = 'STARTED') o
             WHERE s.id = o.id",
        )
        .bind(start_in.as_secs_f64())
        .bind(PERIOD_SECS as f64 * 1000.0)
        .execute(&self.ctx.db)
        .await?;
        Ok(())
    }

    /// `lasso dev` on the bench's database, quiet but for warnings.
    fn start_lasso(&self) -> anyhow::Result<tokio::process::Child> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let config = &self.ctx.config;
        Ok(tokio::process::Command::new(lasso_binary()?)
            .arg("dev")
            .arg("--state-dir")
            .arg(self.dir.path().join("dev"))
            .env("LASSO_DATABASE_URL", config.database_url.expose_secret())
            .env("LASSO_ENCRYPTION_KEY", support::KEY)
            .env("LASSO_SCRIPT_STORE", self.dir.path().join("scripts"))
            .env(
                "LASSO_PROVIDERS_FILE",
                self.dir.path().join("providers.yaml"),
            )
            .env("LASSO_LISTEN_ADDR", format!("127.0.0.1:{port}"))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()?)
    }
}

/// Stops `lasso dev` as Ctrl-C does, and waits for it.
async fn stop(mut child: tokio::process::Child) -> anyhow::Result<()> {
    if let Some(pid) = child.id() {
        std::process::Command::new("kill")
            .args(["-INT", &pid.to_string()])
            .status()?;
    }
    match tokio::time::timeout(Duration::from_secs(30), child.wait()).await {
        Ok(status) => {
            status?;
        }
        Err(_) => child.kill().await?,
    }
    Ok(())
}

struct Step {
    schedules: usize,
    window: Duration,
    tasks_per_sec: f64,
    /// Runs due in the window, and how many of them started (the others count as late).
    due: usize,
    started: usize,
    p50: Option<Duration>,
    p99: Option<Duration>,
    /// Of the lag, due → the scheduler created the run's task.
    created_p99: Option<Duration>,
    lasso_cpu: f64,
    postgres_cpu: f64,
    completed: usize,
}

impl Step {
    fn met(&self) -> bool {
        self.p99.is_some_and(|p| p < TARGET_P99)
    }
}

/// One step: `n` schedules on a fresh `lasso dev` for `window` after [`WARMUP`].
async fn step(setup: &mut Setup, n: usize, window: Duration) -> anyhow::Result<Step> {
    setup.connect_up_to(n).await?;
    // The first runs come due a few seconds after `lasso dev` starts.
    setup.reset(n, Duration::from_secs(3)).await?;
    let child = setup.start_lasso()?;
    let pid = child
        .id()
        .ok_or_else(|| anyhow::anyhow!("lasso dev exited at once"))?;
    tokio::time::sleep(WARMUP).await;

    let cpu_at = || {
        (
            proc_cpu(pid, false).map_or(0.0, |(cpu, _)| cpu),
            postgres_cpu(setup.postmaster),
        )
    };
    let window_start: chrono::DateTime<chrono::Utc> = sqlx::query_scalar("SELECT now()")
        .fetch_one(&setup.ctx.db)
        .await?;
    let (lasso0, pg0) = cpu_at();
    tokio::time::sleep(window).await;
    let (lasso1, pg1) = cpu_at();
    let window_end: chrono::DateTime<chrono::Utc> = sqlx::query_scalar("SELECT now()")
        .fetch_one(&setup.ctx.db)
        .await?;

    // Runs due in the window get until the drain's end to be created (the scheduler moved
    // every schedule past the window) and started.
    let drained = Instant::now();
    let mut scheduled_by = None;
    while drained.elapsed() < DRAIN {
        let db = &setup.ctx.db;
        if scheduled_by.is_none() {
            let behind: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM queue.schedules
                 WHERE state = 'STARTED' AND next_execution_at < $1",
            )
            .bind(window_end)
            .fetch_one(db)
            .await?;
            if behind == 0 {
                scheduled_by = Some(
                    sqlx::query_scalar::<_, chrono::DateTime<chrono::Utc>>("SELECT now()")
                        .fetch_one(db)
                        .await?,
                );
            }
        }
        if let Some(by) = scheduled_by {
            let waiting: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM queue.tasks WHERE state IN ('CREATED', 'DISPATCHED')
                 AND created_at <= $1",
            )
            .bind(by)
            .fetch_one(db)
            .await?;
            if waiting == 0 {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    stop(child).await?;

    let completed: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM queue.tasks
         WHERE kind = 'sync' AND state = 'SUCCEEDED' AND completed_at >= $1 AND completed_at < $2",
    )
    .bind(window_start)
    .bind(window_end)
    .fetch_one(&setup.ctx.db)
    .await?;
    // Each schedule's runs fall on a grid: its phase within the period (its next run keeps it)
    // plus whole periods. A task belongs to the last grid point at or before its creation.
    let lags: Vec<(Option<f64>, Option<f64>)> = sqlx::query_as(
        "WITH s AS (
            SELECT id, mod(extract(epoch FROM next_execution_at), $3) AS phase
            FROM queue.schedules WHERE state = 'STARTED'
         ), slots AS (
            SELECT s.id, s.phase, k
            FROM s, generate_series(ceil((extract(epoch FROM $1::timestamptz) - s.phase) / $3)::bigint,
                                    ceil((extract(epoch FROM $2::timestamptz) - s.phase) / $3)::bigint - 1) AS k
         ), runs AS (
            SELECT t.schedule_id, t.created_at, t.started_at,
                   floor((extract(epoch FROM t.created_at) - s.phase) / $3)::bigint AS k
            FROM queue.tasks t JOIN s ON s.id = t.schedule_id
            WHERE t.kind = 'sync' AND t.created_at >= $1 - make_interval(secs => $3)
         )
         SELECT (extract(epoch FROM r.started_at) - (slots.k * $3 + slots.phase))::float8,
                (extract(epoch FROM r.created_at) - (slots.k * $3 + slots.phase))::float8
         FROM slots LEFT JOIN runs r ON r.schedule_id = slots.id AND r.k = slots.k",
    )
    .bind(window_start)
    .bind(window_end)
    .bind(PERIOD_SECS)
    .fetch_all(&setup.ctx.db)
    .await?;
    let due = lags.len();
    let sorted = |values: Vec<Option<f64>>| {
        let mut v: Vec<Duration> = values
            .into_iter()
            .flatten()
            .map(|s| Duration::from_secs_f64(s.max(0.0)))
            .collect();
        v.sort();
        v
    };
    let (start_lags, create_lags): (Vec<_>, Vec<_>) = lags.into_iter().unzip();
    let started = sorted(start_lags);
    let created = sorted(create_lags);
    // Runs that never started rank last: a quantile that reaches them has no value.
    let at = |v: &[Duration], q: f64| {
        let rank = ((due as f64 * q).ceil() as usize).saturating_sub(1);
        v.get(rank).copied()
    };
    Ok(Step {
        schedules: n,
        window,
        tasks_per_sec: completed as f64
            / ((window_end - window_start).num_milliseconds() as f64 / 1e3),
        due,
        started: started.len(),
        p50: at(&started, 0.50),
        p99: at(&started, 0.99),
        created_p99: at(&created, 0.99),
        lasso_cpu: lasso1 - lasso0,
        postgres_cpu: pg1 - pg0,
        completed: completed as usize,
    })
}

fn secs(d: Option<Duration>) -> String {
    d.map_or("> drain".into(), |d| format!("{:.2} s", d.as_secs_f64()))
}

fn row(s: &Step) {
    let per_task = |cpu: f64| {
        if s.completed == 0 {
            "–".to_string()
        } else {
            format!("{:.1} ms", cpu / s.completed as f64 * 1e3)
        }
    };
    println!(
        "| {} | {} s | {:.0} | {:.1} | {} / {} | {} | {} | {} | {} | {} | {} |",
        s.schedules,
        s.window.as_secs(),
        s.schedules as f64 / PERIOD_SECS as f64,
        s.tasks_per_sec,
        s.started,
        s.due,
        secs(s.p50),
        secs(s.p99),
        secs(s.created_p99),
        per_task(s.lasso_cpu + s.postgres_cpu),
        per_task(s.lasso_cpu),
        per_task(s.postgres_cpu),
    );
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let admin = support::admin_url()?;
    let first_window = Duration::from_secs(env_or("LASSO_BENCH_SCALE_SECS", 120)?);
    let knee_window = Duration::from_secs(env_or("LASSO_BENCH_SCALE_KNEE_SECS", 60)?);
    let first: usize = env_or("LASSO_BENCH_SCALE_SCHEDULES", 10_000)?;
    let binary = lasso_binary()?;
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut setup = Setup::new(&admin).await?;

    println!(
        "| schedules (every 30 s) | window | runs due /s | tasks completed /s | runs started / due | lag p50 | lag p99 | of which due → created, p99 | CPU per task | of which `lasso dev` | of which Postgres |"
    );
    println!("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    let base = step(&mut setup, first, first_window).await?;
    row(&base);
    // The knee, bounded to three more steps: doubling while met (halving while missed), then
    // once between the last step that met and the first that missed.
    let mut met = base.met().then_some(first);
    let mut missed = (!base.met()).then_some(first);
    for _ in 0..2 {
        let n = match (met, missed) {
            (Some(m), None) => m * 2,
            (None, Some(x)) => (x / 2).max(100),
            _ => break,
        };
        let s = step(&mut setup, n, knee_window).await?;
        row(&s);
        if s.met() {
            met = Some(n);
        } else {
            missed = Some(n);
        }
    }
    if let (Some(m), Some(x)) = (met, missed)
        && m < x
    {
        let n = (m + x) / 2;
        let s = step(&mut setup, n, knee_window).await?;
        row(&s);
        if s.met() {
            met = Some(n);
        } else {
            missed = Some(n);
        }
    }
    println!();
    println!(
        "`lasso dev`: {} ({}), `RUST_LOG=warn`, `LASSO_ENVIRONMENT_CONCURRENCY` {} (all connections are in one environment, so at most that many runs are dispatched or running at once); load average at the start: {}. Runs' first due times spread over the 30 s period; {} s warm-up before each window. Runs never created (the schedule's previous run still going) or not started within {} s of the window's end count as later than any lag.",
        binary.display(),
        if cfg!(debug_assertions) {
            "debug build"
        } else {
            "release build"
        },
        std::env::var("LASSO_ENVIRONMENT_CONCURRENCY")
            .unwrap_or_else(|_| "20 (the default)".into()),
        load.split(' ').take(3).collect::<Vec<_>>().join(" "),
        WARMUP.as_secs(),
        DRAIN.as_secs(),
    );
    println!();
    match (met, missed) {
        (Some(m), Some(x)) if m < x => {
            println!("Knee: lag p99 passes 5 s between {m} and {x} schedules.")
        }
        (Some(m), _) => println!("Knee: above {m} schedules (lag p99 under 5 s at every step)."),
        (None, Some(x)) => println!("Knee: below {x} schedules (lag p99 over 5 s at every step)."),
        (None, None) => {}
    }
    println!();
    println!(
        "Target: {first} schedules with lag p99 under 5 s ({}).",
        if base.met() { "met" } else { "missed" }
    );
    Ok(())
}
