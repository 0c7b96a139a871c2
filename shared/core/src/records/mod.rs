//! The records store: what syncs save, per (connection, model, variant, external id).
//!
//! - Saves are batched upserts from arrays (`UNNEST`), all or nothing per batch; a record whose
//!   content hash did not change writes nothing and keeps its `updated_at`.
//! - Full syncs record the ids they saw in an append-only per-run set; at the end of a
//!   successful run the records not seen are soft-deleted (no UPDATE of unchanged rows). Only
//!   records the run could have seen are: those written before it began (its mark holds the
//!   database snapshot of that moment), and only while its seen set is whole (crash recovery
//!   empties the unlogged seen set and its mark together; a run without its mark deletes
//!   nothing). Seen sets of runs that died are purged ([`purge_dead_runs`]).
//! - Readers page by (writing transaction id, external id) and only see rows written by
//!   transactions below their snapshot's xmin: a writer that commits late cannot land behind a
//!   cursor already handed out, so paging never skips a record.

mod validate;

use base64::Engine;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value};
use sqlx::{FromRow, PgPool};
use uuid::Uuid;

pub use validate::{LIMITS, Limits, ValidRecord};

use crate::{ConnectionRowId, Error, Result};

/// Which records a call works on.
#[derive(Debug, Clone)]
pub struct Scope {
    /// The connection's row id (`connections.id`).
    pub connection: ConnectionRowId,
    pub model: String,
    pub variant: String,
}

impl Scope {
    pub fn new(connection: ConnectionRowId, model: &str, variant: Option<&str>) -> Self {
        Self {
            connection,
            model: model.to_string(),
            variant: variant
                .filter(|v| !v.is_empty())
                .unwrap_or(DEFAULT_VARIANT)
                .to_string(),
        }
    }
}

pub const DEFAULT_VARIANT: &str = "base";

/// What a save changed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct SaveSummary {
    pub added: u64,
    pub updated: u64,
    pub unchanged: u64,
}

/// The checks a save makes before writing anything (ids, duplicates, sizes), for dry runs.
pub fn check_batch(records: &[Value]) -> Result<()> {
    validate::batch(records, &LIMITS).map(|_| ())
}

/// Upserts `records` (all or nothing). With `run` (begun with [`begin_run`]), also records
/// their ids as seen by that full-sync run, for [`delete_unseen`].
pub async fn save(
    db: &PgPool,
    scope: &Scope,
    records: &[Value],
    run: Option<Uuid>,
) -> Result<SaveSummary> {
    Ok(save_unless_modified_after(db, scope, records, run, None)
        .await?
        .0)
}

/// [`save`], except that with `guard` (Nango's `ignore_if_modified_after` merging strategy) a
/// stored record modified after that cursor, by another writer, is left as it is (counted
/// unchanged). Also returns the cursor of the last record this save wrote, which the next
/// guarded save of the same writer uses, so its own writes never hold it back.
pub async fn save_unless_modified_after(
    db: &PgPool,
    scope: &Scope,
    records: &[Value],
    run: Option<Uuid>,
    guard: Option<&Cursor>,
) -> Result<(SaveSummary, Option<Cursor>)> {
    let valid = validate::batch(records, &LIMITS)?;
    if valid.is_empty() {
        return Ok((SaveSummary::default(), None));
    }
    let ids: Vec<&str> = valid.iter().map(|r| r.id.as_str()).collect();
    let bodies: Vec<&str> = valid.iter().map(|r| r.json.as_str()).collect();
    let hashes: Vec<Uuid> = valid.iter().map(|r| r.hash).collect();
    let (added, updated, last, xid): (i64, i64, Option<String>, String) = sqlx::query_as(
        "WITH input AS (
            SELECT * FROM UNNEST($4::text[], $5::text[], $6::uuid[]) AS t(external_id, body, data_hash)
         ), upserted AS (
            INSERT INTO records.records AS r (connection_id, model, variant, external_id, data, data_hash)
            SELECT $1, $2, $3, external_id, body::jsonb, data_hash FROM input
            ON CONFLICT (connection_id, model, variant, external_id) DO UPDATE
            SET data = EXCLUDED.data, data_hash = EXCLUDED.data_hash, updated_at = now(),
                deleted_at = NULL, pruned_at = NULL, xid = pg_current_xact_id(),
                last_action = CASE WHEN r.deleted_at IS NULL
                                   THEN 'UPDATED'::records.last_action ELSE 'ADDED' END
            WHERE (r.data_hash <> EXCLUDED.data_hash OR r.deleted_at IS NOT NULL
                   OR r.pruned_at IS NOT NULL)
              AND ($8::text IS NULL OR (r.xid, r.external_id) <= ($8::text::xid8, $9::text))
            RETURNING r.last_action, r.external_id
         ), seen AS (
            INSERT INTO records.run_seen (run_id, model, variant, external_id)
            SELECT $7, $2, $3, external_id FROM input WHERE $7::uuid IS NOT NULL
         )
         SELECT count(*) FILTER (WHERE last_action = 'ADDED'),
                count(*) FILTER (WHERE last_action = 'UPDATED'),
                max(external_id), pg_current_xact_id()::text
         FROM upserted",
    )
    .bind(scope.connection)
    .bind(&scope.model)
    .bind(&scope.variant)
    .bind(&ids)
    .bind(&bodies)
    .bind(&hashes)
    .bind(run)
    .bind(guard.map(|c| c.xid.as_str()))
    .bind(guard.map(|c| c.external_id.as_str()))
    .fetch_one(db)
    .await?;
    let changed = (added + updated) as u64;
    let summary = SaveSummary {
        added: added as u64,
        updated: updated as u64,
        unchanged: valid.len() as u64 - changed,
    };
    // Every row this statement wrote carries its transaction's id.
    Ok((summary, last.map(|external_id| Cursor { xid, external_id })))
}

/// The cursor of the scope's most recently written record, deleted ones included (where
/// Nango's `ignore_if_modified_after` merging starts).
pub async fn last_cursor(db: &PgPool, scope: &Scope) -> Result<Option<Cursor>> {
    let row: Option<(String, String)> = sqlx::query_as(
        "SELECT xid::text, external_id FROM records.records
         WHERE connection_id = $1 AND model = $2 AND variant = $3
         ORDER BY records.xid DESC, records.external_id DESC LIMIT 1",
    )
    .bind(scope.connection)
    .bind(&scope.model)
    .bind(&scope.variant)
    .fetch_optional(db)
    .await?;
    Ok(row.map(|(xid, external_id)| Cursor { xid, external_id }))
}

/// Merges each record's fields into the stored record of the same id (a shallow merge, all or
/// nothing). Ids that do not exist (or are deleted) are an error naming them; nothing is
/// written then.
pub async fn update(db: &PgPool, scope: &Scope, records: &[Value]) -> Result<u64> {
    let valid = validate::batch(records, &LIMITS)?;
    if valid.is_empty() {
        return Ok(0);
    }
    let ids: Vec<&str> = valid.iter().map(|r| r.id.as_str()).collect();
    let mut tx = db.begin().await?;
    let stored: Vec<(String, Value)> = sqlx::query_as(
        "SELECT external_id, data FROM records.records
         WHERE connection_id = $1 AND model = $2 AND variant = $3
           AND external_id = ANY($4) AND deleted_at IS NULL
         FOR UPDATE",
    )
    .bind(scope.connection)
    .bind(&scope.model)
    .bind(&scope.variant)
    .bind(&ids)
    .fetch_all(&mut *tx)
    .await?;
    let mut stored: std::collections::HashMap<String, Value> = stored.into_iter().collect();
    let missing: Vec<String> = ids
        .iter()
        .filter(|id| !stored.contains_key(**id))
        .take(5)
        .map(|id| format!("`{id}`"))
        .collect();
    if !missing.is_empty() {
        return Err(Error::invalid(
            "records",
            format!(
                "batchUpdate needs existing records; not found: {}",
                missing.join(", ")
            ),
        ));
    }
    // Merge here rather than with SQL's `||` so the stored hash is computed the one way saves
    // compute it.
    let merged: Vec<Value> = records
        .iter()
        .zip(&valid)
        .filter_map(|(patch, v)| {
            let mut data = stored.remove(&v.id)?;
            if let (Value::Object(into), Value::Object(fields)) = (&mut data, patch) {
                into.extend(fields.clone());
            }
            Some(data)
        })
        .collect();
    let merged = validate::batch(&merged, &LIMITS)?;
    let bodies: Vec<&str> = merged.iter().map(|r| r.json.as_str()).collect();
    let hashes: Vec<Uuid> = merged.iter().map(|r| r.hash).collect();
    let merged_ids: Vec<&str> = merged.iter().map(|r| r.id.as_str()).collect();
    let (updated,): (i64,) = sqlx::query_as(
        "WITH changed AS (
            UPDATE records.records r
            SET data = t.body::jsonb, data_hash = t.data_hash, updated_at = now(),
                last_action = 'UPDATED', xid = pg_current_xact_id()
            FROM UNNEST($4::text[], $5::text[], $6::uuid[]) AS t(external_id, body, data_hash)
            WHERE r.connection_id = $1 AND r.model = $2 AND r.variant = $3
              AND r.external_id = t.external_id AND r.data_hash <> t.data_hash
            RETURNING 1
         ) SELECT count(*) FROM changed",
    )
    .bind(scope.connection)
    .bind(&scope.model)
    .bind(&scope.variant)
    .bind(&merged_ids)
    .bind(&bodies)
    .bind(&hashes)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(updated as u64)
}

/// Soft-deletes the records with the given ids (each record needs only its `id`); unknown or
/// already deleted ids are ignored. Returns how many were deleted.
pub async fn delete(db: &PgPool, scope: &Scope, records: &[Value]) -> Result<u64> {
    Ok(delete_unless_modified_after(db, scope, records, None)
        .await?
        .0)
}

/// [`delete`], leaving alone records modified after `guard` (see
/// [`save_unless_modified_after`]); also returns the cursor of the last record it deleted.
pub async fn delete_unless_modified_after(
    db: &PgPool,
    scope: &Scope,
    records: &[Value],
    guard: Option<&Cursor>,
) -> Result<(u64, Option<Cursor>)> {
    let ids = validate::ids(records, &LIMITS)?;
    let (deleted, last, xid): (i64, Option<String>, String) = sqlx::query_as(
        "WITH gone AS (
            UPDATE records.records
            SET deleted_at = now(), updated_at = now(), last_action = 'DELETED',
                xid = pg_current_xact_id()
            WHERE connection_id = $1 AND model = $2 AND variant = $3
              AND external_id = ANY($4) AND deleted_at IS NULL
              AND ($5::text IS NULL OR (xid, external_id) <= ($5::text::xid8, $6::text))
            RETURNING external_id
         ) SELECT count(*), max(external_id), pg_current_xact_id()::text FROM gone",
    )
    .bind(scope.connection)
    .bind(&scope.model)
    .bind(&scope.variant)
    .bind(&ids)
    .bind(guard.map(|c| c.xid.as_str()))
    .bind(guard.map(|c| c.external_id.as_str()))
    .fetch_one(db)
    .await?;
    Ok((
        deleted as u64,
        last.map(|external_id| Cursor { xid, external_id }),
    ))
}

/// Starts recording what `run` (of task `task`) sees, before its first save: its mark holds the
/// database snapshot of this moment, which tells the records the run could see from those
/// another writer saves while it runs. Starting again starts afresh.
pub async fn begin_run(db: &PgPool, run: Uuid, task: Uuid) -> Result<()> {
    mark(db, run, task, false).await
}

/// [`begin_run`] for a deletion window (`trackDeletesStart`) that later executions of the sync
/// may continue and close: its seen set outlives the task that opened it, so it is not purged
/// with that task's runs.
pub async fn begin_window(db: &PgPool, run: Uuid, task: Uuid) -> Result<()> {
    mark(db, run, task, true).await
}

async fn mark(db: &PgPool, run: Uuid, task: Uuid, window: bool) -> Result<()> {
    sqlx::query(
        "WITH stale AS (DELETE FROM records.run_seen WHERE run_id = $1)
         INSERT INTO records.seen_runs (run_id, task_id, snapshot, spans_executions)
         VALUES ($1, $2, pg_current_snapshot(), $3)
         ON CONFLICT (run_id) DO UPDATE
         SET task_id = EXCLUDED.task_id, snapshot = EXCLUDED.snapshot, started_at = now(),
             spans_executions = EXCLUDED.spans_executions",
    )
    .bind(run)
    .bind(task)
    .bind(window)
    .execute(db)
    .await?;
    Ok(())
}

/// End of a successful full sync: soft-deletes the scope's records that `run` did not see
/// although it could have (written before it began); how many. `None`, deleting nothing, when
/// the run's mark is gone (see [`delete_unseen_keys`]).
pub async fn delete_unseen(db: &PgPool, scope: &Scope, run: Uuid) -> Result<Option<u64>> {
    Ok(delete_unseen_keys(db, scope, run)
        .await?
        .map(|keys| keys.len() as u64))
}

/// [`delete_unseen`], answering the deleted records' ids (Nango's `deletedKeys`). `None`,
/// deleting nothing, when the run's mark is gone: the database lost its seen set (crash
/// recovery empties unlogged tables), so what it did not see is unknown.
pub async fn delete_unseen_keys(
    db: &PgPool,
    scope: &Scope,
    run: Uuid,
) -> Result<Option<Vec<String>>> {
    let mut tx = db.begin().await?;
    // The seen set is freshly written and has no statistics; a nested loop over it would be
    // quadratic. A hash anti-join is linear whatever the planner believes.
    sqlx::query("SET LOCAL enable_nestloop = off")
        .execute(&mut *tx)
        .await?;
    let (marked, deleted): (bool, Vec<String>) = sqlx::query_as(
        "WITH mark AS (
            SELECT snapshot FROM records.seen_runs WHERE run_id = $4
         ), gone AS (
            UPDATE records.records r
            SET deleted_at = now(), updated_at = now(), last_action = 'DELETED',
                xid = pg_current_xact_id()
            FROM mark
            WHERE r.connection_id = $1 AND r.model = $2 AND r.variant = $3
              AND r.deleted_at IS NULL
              AND pg_visible_in_snapshot(r.xid, mark.snapshot)
              AND NOT EXISTS (
                SELECT 1 FROM records.run_seen s
                WHERE s.run_id = $4 AND s.model = $2 AND s.variant = $3
                  AND s.external_id = r.external_id)
            RETURNING r.external_id
         ) SELECT EXISTS (SELECT 1 FROM mark),
                  coalesce((SELECT array_agg(external_id ORDER BY external_id) FROM gone), '{}')",
    )
    .bind(scope.connection)
    .bind(&scope.model)
    .bind(&scope.variant)
    .bind(run)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(marked.then_some(deleted))
}

/// Forgets what `run` saw, and its mark (after it finished, either way).
pub async fn forget_run(db: &PgPool, run: Uuid) -> Result<()> {
    sqlx::query(
        "WITH mark AS (DELETE FROM records.seen_runs WHERE run_id = $1)
         DELETE FROM records.run_seen WHERE run_id = $1",
    )
    .bind(run)
    .execute(db)
    .await?;
    Ok(())
}

/// Forgets the seen sets and marks of runs whose task is no longer running (its runner died
/// before it could forget them itself); returns how many runs. A seen set without a mark
/// belongs to the task of its own id (a full run's id is its task's).
pub async fn purge_dead_runs(db: &PgPool) -> Result<u64> {
    let (dead,): (i64,) = sqlx::query_as(
        "WITH RECURSIVE seen AS (
            -- One index probe per run: the seen set can be large, its runs are few.
            (SELECT run_id FROM records.run_seen ORDER BY run_id LIMIT 1)
            UNION ALL
            SELECT next.run_id FROM seen,
            LATERAL (SELECT s.run_id FROM records.run_seen s WHERE s.run_id > seen.run_id
                     ORDER BY s.run_id LIMIT 1) next
         ), runs AS (
            SELECT seen.run_id, coalesce(m.task_id, seen.run_id) AS task_id
            FROM seen LEFT JOIN records.seen_runs m USING (run_id)
            UNION
            SELECT run_id, task_id FROM records.seen_runs
         ), dead AS MATERIALIZED (
            SELECT runs.run_id FROM runs
            WHERE NOT EXISTS (SELECT 1 FROM queue.tasks t
                              WHERE t.id = runs.task_id AND t.state = 'STARTED')
              -- An open deletion window waits for a later execution of its sync; one left
              -- open for a month (its sync removed or changed) is abandoned.
              AND NOT EXISTS (SELECT 1 FROM records.seen_runs w
                              WHERE w.run_id = runs.run_id AND w.spans_executions
                                AND w.started_at > now() - interval '30 days')
         ), marks AS (
            DELETE FROM records.seen_runs m USING dead WHERE m.run_id = dead.run_id
         ), seen_rows AS (
            DELETE FROM records.run_seen s USING dead WHERE s.run_id = dead.run_id
         )
         SELECT count(*) FROM dead",
    )
    .fetch_one(db)
    .await?;
    Ok(dead as u64)
}

/// Live (not deleted) records of the scope.
pub async fn count(db: &PgPool, scope: &Scope) -> Result<i64> {
    let (n,): (i64,) = sqlx::query_as(
        "SELECT count(*) FROM records.records
         WHERE connection_id = $1 AND model = $2 AND variant = $3 AND deleted_at IS NULL",
    )
    .bind(scope.connection)
    .bind(&scope.model)
    .bind(&scope.variant)
    .fetch_one(db)
    .await?;
    Ok(n)
}

/// Live records per (connection, model) of the base variant, for the given connections and
/// models, in one statement; pairs without records are absent.
pub async fn count_by_model(
    db: &PgPool,
    connections: &[ConnectionRowId],
    models: &[String],
) -> Result<Vec<(ConnectionRowId, String, i64)>> {
    Ok(sqlx::query_as(
        "SELECT connection_id, model, count(*) FROM records.records
         WHERE connection_id = ANY($1) AND model = ANY($2) AND variant = $3
           AND deleted_at IS NULL
         GROUP BY connection_id, model",
    )
    .bind(connections)
    .bind(models)
    .bind(DEFAULT_VARIANT)
    .fetch_all(db)
    .await?)
}

/// Removes every record of the scope, deleted ones included (a sync triggered with
/// `full_refresh_and_clear_cache` starts from an empty cache). Returns how many.
pub async fn clear<'e>(db: impl sqlx::PgExecutor<'e>, scope: &Scope) -> Result<u64> {
    Ok(sqlx::query(
        "DELETE FROM records.records WHERE connection_id = $1 AND model = $2 AND variant = $3",
    )
    .bind(scope.connection)
    .bind(&scope.model)
    .bind(&scope.variant)
    .execute(db)
    .await?
    .rows_affected())
}

/// A position in a scope's modification order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    xid: String,
    external_id: String,
}

impl Cursor {
    pub fn encode(&self) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(format!("{}:{}", self.xid, self.external_id))
    }

    pub fn decode(raw: &str) -> Result<Self> {
        let bad = || Error::invalid("cursor", "not a cursor this API handed out");
        let text = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(raw)
            .map_err(|_| bad())?;
        let text = String::from_utf8(text).map_err(|_| bad())?;
        let (xid, external_id) = text.split_once(':').ok_or_else(bad)?;
        if xid.is_empty() || !xid.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        Ok(Self {
            xid: xid.to_string(),
            external_id: external_id.to_string(),
        })
    }
}

/// A record's `last_action` (the `records.last_action` enum).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, sqlx::Type)]
#[serde(rename_all = "UPPERCASE")]
#[sqlx(type_name = "records.last_action", rename_all = "UPPERCASE")]
pub enum Action {
    Added,
    Updated,
    Deleted,
}

impl Action {
    fn as_str(self) -> &'static str {
        match self {
            Self::Added => "ADDED",
            Self::Updated => "UPDATED",
            Self::Deleted => "DELETED",
        }
    }

    /// Nango's `filter` values, either case.
    pub fn parse(s: &str) -> Result<Self> {
        match s.trim().to_ascii_uppercase().as_str() {
            "ADDED" => Ok(Self::Added),
            "UPDATED" => Ok(Self::Updated),
            "DELETED" => Ok(Self::Deleted),
            _ => Err(Error::invalid(
                "filter",
                format!("`{s}` is not one of added, updated, deleted"),
            )),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    pub cursor: Option<Cursor>,
    pub limit: i64,
    pub modified_after: Option<DateTime<Utc>>,
    pub filter: Vec<Action>,
    pub ids: Vec<String>,
}

pub const MAX_LIST_LIMIT: i64 = 10_000;

/// A page also ends before its records' JSON passes this many bytes (a record may be 1 MiB,
/// so 100 of them would be 100 MiB in memory, and Lambda returns at most 6 MB); the first
/// record is always returned, and the cursor leads to the rest.
pub const MAX_PAGE_BYTES: usize = 4 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    /// Each record's payload with `_nango_metadata`.
    pub records: Vec<Value>,
    pub next_cursor: Option<String>,
}

#[derive(FromRow)]
struct ListRow {
    external_id: String,
    data: Value,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    deleted_at: Option<DateTime<Utc>>,
    pruned_at: Option<DateTime<Utc>>,
    last_action: Action,
    xid: String,
    /// How many rows the page query read before the byte budget.
    fetched: i64,
}

/// One page of the scope's records in modification order.
pub async fn list(db: &PgPool, scope: &Scope, query: &ListQuery) -> Result<Page> {
    if !(1..=MAX_LIST_LIMIT).contains(&query.limit) {
        return Err(Error::invalid(
            "limit",
            format!("must be between 1 and {MAX_LIST_LIMIT}"),
        ));
    }
    let filter: Vec<&str> = query.filter.iter().map(|a| a.as_str()).collect();
    // The byte budget is applied in the database, so rows past it are never sent: a running
    // total of each payload's JSON text keeps the rows that fit (and always the first).
    let rows: Vec<ListRow> = sqlx::query_as(
        "WITH page AS (
            SELECT external_id, data, created_at, updated_at, deleted_at, pruned_at,
                   last_action, xid, octet_length(data::text) AS size
            FROM records.records
            WHERE connection_id = $1 AND model = $2 AND variant = $3
              AND xid < pg_snapshot_xmin(pg_current_snapshot())
              AND (xid, external_id) > ($4::text::xid8, $5::text)
              AND ($6::timestamptz IS NULL OR updated_at > $6)
              AND (cardinality($7::text[]) = 0 OR last_action = ANY($7::text[]::records.last_action[]))
              AND (cardinality($8::text[]) = 0 OR external_id = ANY($8))
            ORDER BY records.xid, records.external_id
            LIMIT $9
         ), sized AS (
            SELECT *, sum(size) OVER (ORDER BY xid, external_id
                                      ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS total,
                   count(*) OVER () AS fetched
            FROM page
         )
         SELECT external_id, data, created_at, updated_at, deleted_at, pruned_at,
                last_action, xid::text AS xid, fetched
         FROM sized
         WHERE total <= $10 OR total = size
         ORDER BY sized.xid, sized.external_id",
    )
    .bind(scope.connection)
    .bind(&scope.model)
    .bind(&scope.variant)
    // Always a cursor: without one, (0, '') is below every row (xid 0 is never assigned). An
    // `$4 IS NULL OR …` branch instead keeps the row comparison out of the index condition in
    // the generic plan sqlx's prepared statement gets, so a deep page scans every row before
    // it. The ORDER BY names the table's columns: a bare `xid` is the output's `xid::text`,
    // whose text order disagrees with the cursor's numeric comparison.
    .bind(query.cursor.as_ref().map_or("0", |c| c.xid.as_str()))
    .bind(query.cursor.as_ref().map_or("", |c| c.external_id.as_str()))
    .bind(query.modified_after)
    .bind(&filter)
    .bind(&query.ids)
    .bind(query.limit + 1)
    .bind(MAX_PAGE_BYTES as i64)
    .fetch_all(db)
    .await?;
    // More remain when the count limit or the byte budget left fetched rows out.
    let more = rows
        .first()
        .is_some_and(|r| r.fetched > rows.len().min(query.limit as usize) as i64);
    let mut records: Vec<Value> = Vec::with_capacity(rows.len());
    let mut last_cursor = None;
    for row in rows.into_iter().take(query.limit as usize) {
        let cursor = Cursor {
            xid: row.xid,
            external_id: row.external_id,
        }
        .encode();
        let mut data = match row.data {
            Value::Object(m) => m,
            other => Map::from_iter([("value".to_string(), other)]),
        };
        data.insert(
            "_nango_metadata".into(),
            serde_json::json!({
                "first_seen_at": row.created_at,
                "last_modified_at": row.updated_at,
                "last_action": row.last_action,
                "deleted_at": row.deleted_at,
                "pruned_at": row.pruned_at,
                "cursor": cursor,
            }),
        );
        records.push(Value::Object(data));
        last_cursor = Some(cursor);
    }
    Ok(Page {
        records,
        next_cursor: if more { last_cursor } else { None },
    })
}

/// Empties the payload (keeping `id` and the metadata) of up to `limit` records at or before
/// `until`. Returns how many were pruned and whether more remain.
pub async fn prune(db: &PgPool, scope: &Scope, until: &Cursor, limit: i64) -> Result<(u64, bool)> {
    if !(1..=MAX_LIST_LIMIT).contains(&limit) {
        return Err(Error::invalid(
            "limit",
            format!("must be between 1 and {MAX_LIST_LIMIT}"),
        ));
    }
    let (pruned, more): (i64, bool) = sqlx::query_as(
        "WITH candidates AS (
            SELECT external_id FROM records.records
            WHERE connection_id = $1 AND model = $2 AND variant = $3 AND pruned_at IS NULL
              AND (xid, external_id) <= ($4::text::xid8, $5::text)
            ORDER BY xid, external_id
            LIMIT $6 + 1
         ), batch AS (
            SELECT external_id FROM candidates LIMIT $6
         ), pruned AS (
            UPDATE records.records r
            SET data = jsonb_build_object('id', r.data -> 'id'), pruned_at = now()
            FROM batch
            WHERE r.connection_id = $1 AND r.model = $2 AND r.variant = $3
              AND r.external_id = batch.external_id
            RETURNING 1
         )
         SELECT (SELECT count(*) FROM pruned), (SELECT count(*) FROM candidates) > $6",
    )
    .bind(scope.connection)
    .bind(&scope.model)
    .bind(&scope.variant)
    .bind(&until.xid)
    .bind(&until.external_id)
    .bind(limit)
    .fetch_one(db)
    .await?;
    Ok((pruned as u64, more))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_forgeries() {
        let c = Cursor {
            xid: "12345".into(),
            external_id: "a:b".into(),
        };
        assert_eq!(Cursor::decode(&c.encode()).unwrap(), c);
        assert!(Cursor::decode("!!").is_err());
        let forged = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("1 OR 1=1:x");
        assert!(Cursor::decode(&forged).is_err());
    }

    #[test]
    fn filter_values_parse_in_either_case() {
        assert_eq!(Action::parse("added").unwrap(), Action::Added);
        assert_eq!(Action::parse("DELETED").unwrap(), Action::Deleted);
        assert!(Action::parse("gone").is_err());
    }
}
