//! Records upsert throughput with dedupe, as a ratio to a raw `COPY` of the same rows into a
//! table of the same shape, on the same Postgres, in the same run.
//!
//! `LASSO_BENCH_DATABASE_URL` names the cluster (scripts/bench starts one with default
//! settings, fsync on). Prints a Markdown table.

use std::time::{Duration, Instant};

use lasso_services::ConnectionRowId;
use lasso_services::records::{self, Scope};
use secrecy::SecretString;
use serde_json::{Value, json};
use sqlx::PgPool;

const ROWS: usize = 100_000;
const BATCH: usize = 1_000;
const TRIALS: usize = 3;

fn record(i: usize, revision: u32) -> Value {
    json!({
        "id": format!("issue-{i}"),
        "number": i,
        "title": format!("Crash when syncing page {i} of the repository list"),
        "state": if i.is_multiple_of(3) { "closed" } else { "open" },
        "body": "Steps to reproduce: open the app, connect an account, wait for the first sync. \
                 Expected the list to fill; instead the spinner never stops and the log shows a 502.",
        "labels": ["bug", "sync", format!("area-{}", i % 17)],
        "author": {"login": format!("user{}", i % 997), "id": i % 997, "site_admin": false},
        "comments": i % 23,
        "revision": revision,
        "created_at": "2026-01-02T03:04:05Z",
        "updated_at": "2026-11-20T10:00:00Z",
    })
}

async fn setup(admin: &str) -> anyhow::Result<(PgPool, ConnectionRowId)> {
    let mut url = url::Url::parse(admin)?;
    url.set_path(&format!("lasso_bench_{}", uuid::Uuid::new_v4().simple()));
    let secret = SecretString::from(url.to_string());
    lasso_services::db::create_database_if_missing(&secret).await?;
    let pool = lasso_services::db::pool_for(&secret, 4)?;
    lasso_services::db::migrate(&pool).await?;
    let (connection,): (ConnectionRowId,) = sqlx::query_as(
        "WITH e AS (INSERT INTO environments (uuid, name) VALUES (gen_random_uuid(), 'bench') RETURNING id),
              i AS (INSERT INTO integrations (uuid, environment_id, unique_key, provider)
                    SELECT gen_random_uuid(), id, 'github', 'github' FROM e RETURNING id, environment_id)
         INSERT INTO connections (uuid, environment_id, integration_id, connection_id, credentials_encrypted)
         SELECT gen_random_uuid(), environment_id, id, 'bench', '\\x00' FROM i RETURNING id",
    )
    .fetch_one(&pool)
    .await?;
    sqlx::query(
        "CREATE TABLE bench_copy (LIKE records.records INCLUDING DEFAULTS INCLUDING INDEXES)",
    )
    .execute(&pool)
    .await?;
    Ok((pool, connection))
}

/// COPY text format: escape backslash, tab, newline, carriage return.
fn copy_escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('\t', "\\t")
        .replace('\n', "\\n")
        .replace('\r', "\\r")
}

async fn time_copy(
    pool: &PgPool,
    connection: ConnectionRowId,
    rows: &[Value],
) -> anyhow::Result<Duration> {
    sqlx::query("TRUNCATE bench_copy").execute(pool).await?;
    // Prepared before the clock starts: the baseline is COPY itself.
    let mut payload = String::new();
    for r in rows {
        let text = serde_json::to_string(r)?;
        let hash = uuid::Uuid::new_v4();
        payload.push_str(&format!(
            "{connection}\tIssue\tbase\t{}\t{}\t{hash}\n",
            copy_escape(r["id"].as_str().unwrap()),
            copy_escape(&text)
        ));
    }
    let mut conn = pool.acquire().await?;
    let start = Instant::now();
    let mut copy = conn
        .copy_in_raw(
            "COPY bench_copy (connection_id, model, variant, external_id, data, data_hash) FROM STDIN",
        )
        .await?;
    copy.send(payload.as_bytes()).await?;
    copy.finish().await?;
    Ok(start.elapsed())
}

async fn clear(pool: &PgPool) -> anyhow::Result<()> {
    sqlx::query("TRUNCATE records.records")
        .execute(pool)
        .await?;
    Ok(())
}

/// Saves every batch through `records::save`, `writers` batches at a time.
async fn time_save(
    pool: &PgPool,
    scope: &Scope,
    rows: &[Value],
    writers: usize,
) -> anyhow::Result<(Duration, records::SaveSummary)> {
    let start = Instant::now();
    let mut total = records::SaveSummary::default();
    for group in rows.chunks(BATCH * writers) {
        let results = futures::future::try_join_all(
            group
                .chunks(BATCH)
                .map(|batch| records::save(pool, scope, batch, None)),
        )
        .await?;
        for s in results {
            total.added += s.added;
            total.updated += s.updated;
            total.unchanged += s.unchanged;
        }
    }
    Ok((start.elapsed(), total))
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn rate(d: Duration) -> f64 {
    ROWS as f64 / d.as_secs_f64()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let admin = std::env::var("LASSO_BENCH_DATABASE_URL")
        .map_err(|_| anyhow::anyhow!("LASSO_BENCH_DATABASE_URL is not set; run `make bench`"))?;
    let (pool, connection) = setup(&admin).await?;
    let scope = Scope::new(connection, "Issue", None);
    let rows: Vec<Value> = (0..ROWS).map(|i| record(i, 1)).collect();
    let changed: Vec<Value> = (0..ROWS)
        .map(|i| record(i, if i.is_multiple_of(10) { 2 } else { 1 }))
        .collect();

    let (mut copy, mut insert, mut unchanged, mut tenth, mut insert2) =
        (vec![], vec![], vec![], vec![], vec![]);
    for _ in 0..TRIALS {
        copy.push(time_copy(&pool, connection, &rows).await?);
        clear(&pool).await?;
        let (d, s) = time_save(&pool, &scope, &rows, 1).await?;
        assert_eq!(s.added as usize, ROWS);
        insert.push(d);
        let (d, s) = time_save(&pool, &scope, &rows, 1).await?;
        assert_eq!(s.unchanged as usize, ROWS);
        unchanged.push(d);
        let (d, s) = time_save(&pool, &scope, &changed, 1).await?;
        assert_eq!(s.updated as usize, ROWS / 10);
        tenth.push(d);
        clear(&pool).await?;
        insert2.push(time_save(&pool, &scope, &rows, 2).await?.0);
    }
    let copy = median(copy);
    let base = rate(copy);
    println!("| records, {ROWS} rows of ~0.6 KB, batches of {BATCH} | rows/s | vs COPY |");
    println!("| --- | ---: | ---: |");
    println!(
        "| raw `COPY` into the same table shape (baseline) | {:.0} | 1.00 |",
        base
    );
    for (label, d) in [
        ("`records::save`, empty table (all ADDED)", median(insert)),
        (
            "`records::save`, same rows again (all unchanged, nothing written)",
            median(unchanged),
        ),
        ("`records::save`, 10% of rows changed", median(tenth)),
        ("`records::save`, empty table, 2 writers", median(insert2)),
    ] {
        println!("| {label} | {:.0} | {:.2} |", rate(d), rate(d) / base);
    }
    Ok(())
}
