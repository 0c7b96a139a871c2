//! Records read latency: pages of 100 from a connection holding 1,000,000 records, measured
//! twice in the same run: through `records::list` (the records store alone) and through
//! `GET /records` on the real api router (HTTP on loopback, auth, the connection lookup, JSON).
//! Each way reads the first page and pages at random cursors across the million.
//!
//! The records are written with SQL in 100 transactions of 10,000 (as syncs write in batches,
//! so they span many `xid`s), then the table is vacuumed and analyzed, as autovacuum would.
//!
//! `LASSO_BENCH_DATABASE_URL` names the cluster. Prints a Markdown table.

use std::time::{Duration, Instant};

use base64::Engine;
use lasso_services::records::{self, Cursor, ListQuery, Scope};
use lasso_services::{ConnectionRowId, environments};
use serde_json::{Value, json};

mod support;

const RECORDS: i64 = 1_000_000;
const PER_TRANSACTION: i64 = 10_000;
const PAGE: i64 = 100;
const SAMPLES: usize = 500;
const WARMUP: usize = 50;
const PROVIDERS: &str = "bench-api:\n  display_name: Bench\n  auth_mode: API_KEY\n  proxy:\n    base_url: http://127.0.0.1:9\n";

struct Stats {
    p50: Duration,
    p95: Duration,
    p99: Duration,
}

fn stats(mut samples: Vec<Duration>) -> Stats {
    samples.sort();
    let at = |q| support::quantile(&samples, q);
    Stats {
        p50: at(0.50),
        p95: at(0.95),
        p99: at(0.99),
    }
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

/// A small deterministic generator, so runs read the same pages.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let admin = support::admin_url()?;
    let (ctx, _dir) = support::lasso(&admin, Some(PROVIDERS), &[]).await?;
    let (env, key) = environments::create(&ctx.db, "bench").await?;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let router = lasso_api::router(ctx.clone());
    tokio::spawn(async move { axum::serve(listener, router).await });
    let http = reqwest::Client::new();
    for (path, body) in [
        (
            "/integrations",
            json!({"provider": "bench-api", "unique_key": "bench"}),
        ),
        (
            "/connections",
            json!({"provider_config_key": "bench", "connection_id": "c1",
                   "credentials": {"type": "API_KEY", "apiKey": "k"}}),
        ),
    ] {
        http.post(format!("{base}{path}"))
            .bearer_auth(&key)
            .json(&body)
            .send()
            .await?
            .error_for_status()?;
    }
    let connection: ConnectionRowId = sqlx::query_scalar(
        "SELECT id FROM connections WHERE environment_id = $1 AND connection_id = 'c1'",
    )
    .bind(env.id)
    .fetch_one(&ctx.db)
    .await?;

    // ~0.4 KB per record, in transactions of 10,000: each has its own xid.
    for first in (0..RECORDS).step_by(PER_TRANSACTION as usize) {
        sqlx::query(
            "INSERT INTO records.records (connection_id, model, external_id, data, data_hash)
             SELECT $1, 'Issue', 'issue-' || lpad(g::text, 7, '0'),
                    jsonb_build_object('id', 'issue-' || lpad(g::text, 7, '0'), 'number', g,
                        'title', 'Crash when syncing page ' || g || ' of the repository list',
                        'state', CASE WHEN g % 3 = 0 THEN 'closed' ELSE 'open' END,
                        'body', repeat('Steps to reproduce: open the app, wait. ', 5),
                        'labels', jsonb_build_array('bug', 'area-' || g % 17),
                        'author', jsonb_build_object('login', 'user' || g % 997, 'id', g % 997)),
                    md5(g::text)::uuid
             FROM generate_series($2::bigint, $3::bigint) AS g",
        )
        .bind(connection)
        .bind(first)
        .bind(first + PER_TRANSACTION - 1)
        .execute(&ctx.db)
        .await?;
    }
    sqlx::query("VACUUM ANALYZE records.records")
        .execute(&ctx.db)
        .await?;
    // Each transaction's xid, in order: the cursor of the record at position p is the xid of
    // transaction p / 10,000 and the id of p.
    let xids: Vec<String> = sqlx::query_scalar(
        "SELECT xid::text FROM (SELECT DISTINCT xid FROM records.records) x ORDER BY xid",
    )
    .fetch_all(&ctx.db)
    .await?;
    anyhow::ensure!(
        xids.len() as i64 == RECORDS / PER_TRANSACTION,
        "expected {} transactions, found {}",
        RECORDS / PER_TRANSACTION,
        xids.len()
    );
    let mut rng = Lcg(42);
    let mut random_cursor = || {
        let p = rng.below((RECORDS - PAGE) as u64) as i64;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!(
            "{}:issue-{p:07}",
            xids[(p / PER_TRANSACTION) as usize]
        ))
    };
    let cursors: Vec<String> = (0..WARMUP + SAMPLES).map(|_| random_cursor()).collect();
    let scope = Scope::new(connection, "Issue", None);

    let store = |cursor: Option<String>| {
        let (db, scope) = (ctx.db.clone(), &scope);
        async move {
            let query = ListQuery {
                cursor: cursor.map(|c| Cursor::decode(&c)).transpose()?,
                limit: PAGE,
                ..Default::default()
            };
            let started = Instant::now();
            let page = records::list(&db, scope, &query).await?;
            let elapsed = started.elapsed();
            anyhow::ensure!(
                page.records.len() as i64 == PAGE,
                "a page had {}",
                page.records.len()
            );
            Ok::<_, anyhow::Error>(elapsed)
        }
    };
    let api = |cursor: Option<String>| {
        let (http, base, key) = (&http, &base, &key);
        async move {
            let mut request = http
                .get(format!("{base}/records"))
                .bearer_auth(key)
                .header("Connection-Id", "c1")
                .header("Provider-Config-Key", "bench")
                .query(&[("model", "Issue"), ("limit", "100")]);
            if let Some(c) = &cursor {
                request = request.query(&[("cursor", c)]);
            }
            let started = Instant::now();
            let response = request.send().await?.error_for_status()?;
            let body: Value = response.json().await?;
            let elapsed = started.elapsed();
            let n = body["records"].as_array().map_or(0, Vec::len);
            anyhow::ensure!(n as i64 == PAGE, "a page had {n}");
            Ok::<_, anyhow::Error>(elapsed)
        }
    };

    let mut rows = Vec::new();
    let mut samples = Vec::new();
    for i in 0..WARMUP + SAMPLES {
        let d = store(None).await?;
        if i >= WARMUP {
            samples.push(d);
        }
    }
    rows.push(("`records::list`, first page", stats(samples)));
    let mut samples = Vec::new();
    for (i, c) in cursors.iter().enumerate() {
        let d = store(Some(c.clone())).await?;
        if i >= WARMUP {
            samples.push(d);
        }
    }
    rows.push(("`records::list`, random cursors", stats(samples)));
    let mut samples = Vec::new();
    for i in 0..WARMUP + SAMPLES {
        let d = api(None).await?;
        if i >= WARMUP {
            samples.push(d);
        }
    }
    rows.push(("`GET /records` over HTTP, first page", stats(samples)));
    let mut samples = Vec::new();
    for (i, c) in cursors.iter().enumerate() {
        let d = api(Some(c.clone())).await?;
        if i >= WARMUP {
            samples.push(d);
        }
    }
    rows.push(("`GET /records` over HTTP, random cursors", stats(samples)));

    println!(
        "| page of {PAGE} from a connection with {RECORDS} records (~0.4 KB each), {SAMPLES} sequential reads | p50 | p95 | p99 |"
    );
    println!("| --- | ---: | ---: | ---: |");
    for (name, s) in &rows {
        println!("| {name} | {} | {} | {} |", ms(s.p50), ms(s.p95), ms(s.p99));
    }
    let worst = rows
        .iter()
        .filter(|(name, _)| name.starts_with("`GET"))
        .map(|(_, s)| s.p99)
        .max()
        .unwrap_or_default();
    println!();
    println!(
        "Target: `GET /records` p99 under 10 ms ({}).",
        if worst < Duration::from_millis(10) {
            "met"
        } else {
            "missed"
        }
    );
    Ok(())
}
