//! Where operation logs go: OpenSearch/Elasticsearch (`_bulk`, `_search`) on AWS, Postgres
//! tables (schema `logs`) locally.

use crate::EnvironmentId;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use opensearch::OpenSearch;
use opensearch::http::request::JsonBody;
use opensearch::http::transport::{SingleNodeConnectionPool, TransportBuilder};
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

use crate::config::OpenSearchAuth;
use crate::logs::{Cursor, LogBatch, Message, Operation, OperationQuery, Page};
use crate::{Error, Result};

pub const MAX_PAGE: usize = 500;

/// A page of an operation's messages also ends before their text and meta pass this many bytes
/// (a script may log thousands of long lines; Lambda returns at most 6 MB). The first message
/// is always returned; the cursor leads to the rest.
pub const MAX_MESSAGES_PAGE_BYTES: usize = 4 * 1024 * 1024;

/// Which page of an operation's messages to read.
#[derive(Debug, Clone, Default)]
pub struct MessageQuery {
    /// From a previous page's `next_cursor`.
    pub cursor: Option<String>,
    /// At most this many (1 to [`MAX_PAGE`]).
    pub limit: usize,
}

#[async_trait]
pub trait LogSink: Send + Sync {
    async fn write(&self, batch: LogBatch) -> Result<()>;
    async fn search_operations(&self, query: &OperationQuery) -> Result<Page<Operation>>;
    /// One page of the messages of one operation of the environment, oldest first, bounded by
    /// count and by [`MAX_MESSAGES_PAGE_BYTES`].
    async fn messages_page(
        &self,
        environment_id: EnvironmentId,
        operation_id: Uuid,
        query: &MessageQuery,
    ) -> Result<Page<Message>>;

    /// The first page of an operation's messages (at most [`MAX_PAGE`]), oldest first.
    async fn messages(
        &self,
        environment_id: EnvironmentId,
        operation_id: Uuid,
    ) -> Result<Vec<Message>> {
        let query = MessageQuery {
            cursor: None,
            limit: MAX_PAGE,
        };
        Ok(self
            .messages_page(environment_id, operation_id, &query)
            .await?
            .items)
    }
    /// One operation of the environment (`None` when it has none by that id).
    async fn operation(
        &self,
        environment_id: EnvironmentId,
        operation_id: Uuid,
    ) -> Result<Option<Operation>>;

    /// Writes `batch`; a log store that is down never fails the caller: the loss is counted and
    /// reported in the process log. Returns how many entries were dropped.
    async fn record(&self, batch: LogBatch) -> usize {
        let entries = batch.operations.len() + batch.messages.len();
        match self.write(batch).await {
            Ok(()) => 0,
            Err(e) => {
                tracing::warn!(dropped = entries, error = %e, "log store unavailable; operation log dropped");
                entries
            }
        }
    }

    /// Hands `batch` to the store without waiting for it where the sink buffers (see
    /// [`BufferedLogSink`]); otherwise writes it as [`record`](Self::record) does.
    async fn submit(&self, batch: LogBatch) {
        self.record(batch).await;
    }

    /// Waits at most `bound` for submitted batches to be written; returns how many entries
    /// are still waiting (and reports the count in the process log). Nothing waits in a sink
    /// that writes at once.
    async fn flush(&self, _bound: Duration) -> usize {
        0
    }
}

fn entries(batch: &LogBatch) -> usize {
    batch.operations.len() + batch.messages.len()
}

/// Most log entries a [`BufferedLogSink`] holds for the store; past it, batches are dropped
/// (and counted) rather than held in memory without bound.
pub const BUFFER_ENTRIES: usize = 20_000;

/// Entries written to the store in one request, at most (batches waiting are merged).
const WRITE_ENTRIES: usize = 2_000;

/// How long a read waits for this process's own submitted logs, so a request that just logged
/// finds its operation.
const READ_FLUSH: Duration = Duration::from_secs(10);

/// A log sink that writes submitted batches in the background, so a slow or hung log store
/// never holds up the request that logged: a bounded buffer, one writer task, and a bounded
/// [`flush`](LogSink::flush) for a Lambda before it returns. `write` and `record` still write
/// at once (the runner counts what a task's log lost).
pub struct BufferedLogSink {
    inner: Arc<dyn LogSink>,
    state: Arc<BufferState>,
    /// Started on the first submit, on the runtime that submits.
    sender: OnceLock<tokio::sync::mpsc::UnboundedSender<LogBatch>>,
}

#[derive(Default)]
struct BufferState {
    /// Entries submitted and not yet written (or given up on).
    pending: AtomicUsize,
    /// Entries lost: the buffer was full, or the store refused or timed out.
    dropped: AtomicU64,
    idle: tokio::sync::Notify,
}

impl BufferedLogSink {
    pub fn new(inner: Arc<dyn LogSink>) -> Self {
        Self {
            inner,
            state: Arc::default(),
            sender: OnceLock::new(),
        }
    }

    /// Entries lost so far in this process (buffer full, or the store failed).
    pub fn dropped(&self) -> u64 {
        self.state.dropped.load(Ordering::Relaxed)
    }

    /// Entries submitted and not yet written.
    pub fn pending(&self) -> usize {
        self.state.pending.load(Ordering::Acquire)
    }

    fn sender(&self) -> &tokio::sync::mpsc::UnboundedSender<LogBatch> {
        self.sender.get_or_init(|| {
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            tokio::spawn(write_behind(self.inner.clone(), self.state.clone(), rx));
            tx
        })
    }

    /// Waits at most `bound` until nothing is pending; returns what still is.
    async fn settle(&self, bound: Duration) -> usize {
        let state = &self.state;
        let idle = async {
            loop {
                // Registered before the check, so a write finishing in between still wakes it.
                let notified = state.idle.notified();
                if state.pending.load(Ordering::Acquire) == 0 {
                    return;
                }
                notified.await;
            }
        };
        let _ = tokio::time::timeout(bound, idle).await;
        self.pending()
    }
}

/// The writer task: merges what is waiting into one write, writes it, and counts what the
/// store lost.
async fn write_behind(
    inner: Arc<dyn LogSink>,
    state: Arc<BufferState>,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<LogBatch>,
) {
    while let Some(mut batch) = rx.recv().await {
        while entries(&batch) < WRITE_ENTRIES {
            match rx.try_recv() {
                Ok(more) => {
                    batch.operations.extend(more.operations);
                    batch.messages.extend(more.messages);
                }
                Err(_) => break,
            }
        }
        let n = entries(&batch);
        let lost = inner.record(batch).await;
        state.dropped.fetch_add(lost as u64, Ordering::Relaxed);
        state.pending.fetch_sub(n, Ordering::AcqRel);
        state.idle.notify_waiters();
    }
}

#[async_trait]
impl LogSink for BufferedLogSink {
    async fn write(&self, batch: LogBatch) -> Result<()> {
        self.inner.write(batch).await
    }

    async fn submit(&self, batch: LogBatch) {
        let n = entries(&batch);
        if n == 0 {
            return;
        }
        let before = self.state.pending.fetch_add(n, Ordering::AcqRel);
        let refused = if before + n > BUFFER_ENTRIES {
            Some("log buffer full (the log store is slow or down); operation log dropped")
        } else if self.sender().send(batch).is_err() {
            Some("log writer stopped; operation log dropped")
        } else {
            None
        };
        if let Some(why) = refused {
            self.state.pending.fetch_sub(n, Ordering::AcqRel);
            self.state.idle.notify_waiters();
            let total = self.state.dropped.fetch_add(n as u64, Ordering::Relaxed) + n as u64;
            tracing::warn!(dropped = n, dropped_total = total, "{why}");
        }
    }

    async fn flush(&self, bound: Duration) -> usize {
        let left = self.settle(bound).await;
        if left > 0 {
            tracing::warn!(
                unflushed = left,
                bound_ms = bound.as_millis() as u64,
                "log store slow: operation log entries not flushed before returning"
            );
        }
        left
    }

    async fn search_operations(&self, query: &OperationQuery) -> Result<Page<Operation>> {
        self.settle(READ_FLUSH).await;
        self.inner.search_operations(query).await
    }

    async fn messages_page(
        &self,
        environment_id: EnvironmentId,
        operation_id: Uuid,
        query: &MessageQuery,
    ) -> Result<Page<Message>> {
        self.settle(READ_FLUSH).await;
        self.inner
            .messages_page(environment_id, operation_id, query)
            .await
    }

    async fn operation(
        &self,
        environment_id: EnvironmentId,
        operation_id: Uuid,
    ) -> Result<Option<Operation>> {
        self.settle(READ_FLUSH).await;
        self.inner.operation(environment_id, operation_id).await
    }
}

fn page_limit(limit: usize) -> usize {
    limit.clamp(1, MAX_PAGE)
}

/// The parts of an operation search, as literals so queries stay `&'static str` (sqlx's
/// injection guard). The filters bind $1..$10; $11 is the free text, $12 the limit.
macro_rules! operation_columns {
    () => {
        "SELECT o.id, o.environment_id, o.kind, o.state, o.integration, o.connection, o.script,
                o.started_at, o.ended_at, o.error, o.meta FROM logs.operations o"
    };
}

macro_rules! operation_filters {
    () => {
        " WHERE o.environment_id = $1
            AND (cardinality($2::text[]) = 0 OR o.kind = ANY($2))
            AND (cardinality($3::text[]) = 0 OR o.state = ANY($3))
            AND ($4::text IS NULL OR o.integration = $4)
            AND ($5::text IS NULL OR o.connection = $5)
            AND ($6::text IS NULL OR o.script = $6)
            AND ($7::timestamptz IS NULL OR o.started_at >= $7)
            AND ($8::timestamptz IS NULL OR o.started_at < $8)
            AND ($9::timestamptz IS NULL OR (o.started_at, o.id) < ($9, $10::uuid))"
    };
}

macro_rules! operation_page {
    () => {
        " ORDER BY o.started_at DESC, o.id DESC LIMIT $12"
    };
}

const SEARCH_OPERATIONS: &str = concat!(
    operation_columns!(),
    operation_filters!(),
    " AND $11::text IS NULL",
    operation_page!()
);

const SEARCH_OPERATIONS_TEXT: &str = concat!(
    "SELECT * FROM ((",
    operation_columns!(),
    operation_filters!(),
    " AND o.error ILIKE $11",
    operation_page!(),
    ") UNION (",
    operation_columns!(),
    operation_filters!(),
    " AND EXISTS (SELECT 1 FROM logs.messages m
                  WHERE m.operation_id = o.id AND m.message ILIKE $11)",
    operation_page!(),
    ")) o ORDER BY o.started_at DESC, o.id DESC LIMIT $12"
);

fn like_pattern(text: &str) -> String {
    let escaped = text
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    format!("%{escaped}%")
}

fn to_strings<T: serde::Serialize>(items: &[T]) -> Vec<String> {
    items
        .iter()
        .filter_map(|i| serde_json::to_value(i).ok()?.as_str().map(str::to_string))
        .collect()
}

pub struct PostgresLogSink {
    db: PgPool,
}

impl PostgresLogSink {
    pub fn new(db: PgPool) -> Self {
        Self { db }
    }
}

#[derive(sqlx::FromRow)]
struct OperationRow {
    id: Uuid,
    environment_id: EnvironmentId,
    kind: String,
    state: String,
    integration: Option<String>,
    connection: Option<String>,
    script: Option<String>,
    started_at: DateTime<Utc>,
    ended_at: Option<DateTime<Utc>>,
    error: Option<String>,
    meta: Value,
}

impl TryFrom<OperationRow> for Operation {
    type Error = Error;
    fn try_from(r: OperationRow) -> Result<Self> {
        let corrupt = |what: &str| Error::log_sink(format!("stored operation has a bad {what}"));
        Ok(Operation {
            id: r.id,
            environment_id: r.environment_id,
            kind: serde_json::from_value(Value::String(r.kind)).map_err(|_| corrupt("kind"))?,
            state: serde_json::from_value(Value::String(r.state)).map_err(|_| corrupt("state"))?,
            integration: r.integration,
            connection: r.connection,
            script: r.script,
            started_at: r.started_at,
            ended_at: r.ended_at,
            error: r.error,
            meta: r.meta,
        })
    }
}

#[derive(sqlx::FromRow)]
struct MessageRow {
    id: Uuid,
    operation_id: Uuid,
    environment_id: EnvironmentId,
    created_at: DateTime<Utc>,
    level: String,
    kind: String,
    message: String,
    meta: Value,
}

impl TryFrom<MessageRow> for Message {
    type Error = Error;
    fn try_from(r: MessageRow) -> Result<Self> {
        let corrupt = |what: &str| Error::log_sink(format!("stored message has a bad {what}"));
        Ok(Message {
            id: r.id,
            operation_id: r.operation_id,
            environment_id: r.environment_id,
            created_at: r.created_at,
            level: serde_json::from_value(Value::String(r.level)).map_err(|_| corrupt("level"))?,
            kind: serde_json::from_value(Value::String(r.kind)).map_err(|_| corrupt("kind"))?,
            message: r.message,
            meta: r.meta,
        })
    }
}

#[derive(sqlx::FromRow)]
struct PagedMessageRow {
    #[sqlx(flatten)]
    row: MessageRow,
    /// How many messages the page query read before the byte budget.
    fetched: i64,
}

#[async_trait]
impl LogSink for PostgresLogSink {
    async fn write(&self, batch: LogBatch) -> Result<()> {
        if batch.operations.is_empty() && batch.messages.is_empty() {
            return Ok(());
        }
        let (ops, msgs) = (&batch.operations, &batch.messages);
        // One statement, so one round trip and all or nothing without a transaction.
        sqlx::query(
            "WITH ops AS (
                INSERT INTO logs.operations
                    (id, environment_id, kind, state, integration, connection, script,
                     started_at, ended_at, error, meta)
                SELECT * FROM UNNEST($1::uuid[], $2::bigint[], $3::text[], $4::text[],
                    $5::text[], $6::text[], $7::text[], $8::timestamptz[], $9::timestamptz[],
                    $10::text[], $11::jsonb[])
                ON CONFLICT (id) DO UPDATE SET state = EXCLUDED.state,
                    ended_at = EXCLUDED.ended_at, error = EXCLUDED.error, meta = EXCLUDED.meta
             )
             INSERT INTO logs.messages
                (id, operation_id, environment_id, created_at, level, kind, message, meta)
             SELECT * FROM UNNEST($12::uuid[], $13::uuid[], $14::bigint[], $15::timestamptz[],
                 $16::text[], $17::text[], $18::text[], $19::jsonb[])
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(ops.iter().map(|o| o.id).collect::<Vec<_>>())
        .bind(ops.iter().map(|o| o.environment_id).collect::<Vec<_>>())
        .bind(to_strings(&ops.iter().map(|o| o.kind).collect::<Vec<_>>()))
        .bind(to_strings(&ops.iter().map(|o| o.state).collect::<Vec<_>>()))
        .bind(
            ops.iter()
                .map(|o| o.integration.clone())
                .collect::<Vec<_>>(),
        )
        .bind(ops.iter().map(|o| o.connection.clone()).collect::<Vec<_>>())
        .bind(ops.iter().map(|o| o.script.clone()).collect::<Vec<_>>())
        .bind(ops.iter().map(|o| o.started_at).collect::<Vec<_>>())
        .bind(ops.iter().map(|o| o.ended_at).collect::<Vec<_>>())
        .bind(ops.iter().map(|o| o.error.clone()).collect::<Vec<_>>())
        .bind(ops.iter().map(|o| o.meta.clone()).collect::<Vec<_>>())
        .bind(msgs.iter().map(|m| m.id).collect::<Vec<_>>())
        .bind(msgs.iter().map(|m| m.operation_id).collect::<Vec<_>>())
        .bind(msgs.iter().map(|m| m.environment_id).collect::<Vec<_>>())
        .bind(msgs.iter().map(|m| m.created_at).collect::<Vec<_>>())
        .bind(to_strings(
            &msgs.iter().map(|m| m.level).collect::<Vec<_>>(),
        ))
        .bind(to_strings(&msgs.iter().map(|m| m.kind).collect::<Vec<_>>()))
        .bind(msgs.iter().map(|m| m.message.clone()).collect::<Vec<_>>())
        .bind(msgs.iter().map(|m| m.meta.clone()).collect::<Vec<_>>())
        .execute(&self.db)
        .await?;
        Ok(())
    }

    async fn search_operations(&self, q: &OperationQuery) -> Result<Page<Operation>> {
        let limit = page_limit(q.limit);
        let cursor = q.cursor.as_deref().map(Cursor::decode).transpose()?;
        // Free text is two ordered branches (the operation's error, its messages) merged, not
        // one OR: as a semi-join the messages branch can walk operations newest first when the
        // word is common and use the trigram index when it is rare. The statement is unnamed so
        // Postgres plans it with the word itself (a cached generic plan would pick one way for
        // every word).
        let sql = if q.text.is_some() {
            SEARCH_OPERATIONS_TEXT
        } else {
            SEARCH_OPERATIONS
        };
        let rows: Vec<OperationRow> = sqlx::query_as(sql)
            .bind(q.environment_id)
            .bind(to_strings(&q.kinds))
            .bind(to_strings(&q.states))
            .bind(&q.integration)
            .bind(&q.connection)
            .bind(&q.script)
            .bind(q.from)
            .bind(q.to)
            .bind(cursor.map(|c| c.started_at()))
            .bind(cursor.map(|c| c.id))
            .bind(q.text.as_deref().map(like_pattern))
            .bind(limit as i64 + 1)
            .persistent(false)
            .fetch_all(&self.db)
            .await?;
        finish_page(
            rows.into_iter()
                .map(Operation::try_from)
                .collect::<Result<Vec<_>>>()?,
            limit,
        )
    }

    async fn messages_page(
        &self,
        environment_id: EnvironmentId,
        operation_id: Uuid,
        query: &MessageQuery,
    ) -> Result<Page<Message>> {
        let limit = page_limit(query.limit);
        let cursor = query.cursor.as_deref().map(Cursor::decode).transpose()?;
        // The byte budget is applied in the database (a running total), so messages past it
        // are never sent; `fetched` tells whether the count or the budget left some out.
        let rows: Vec<PagedMessageRow> = sqlx::query_as(
            "WITH page AS (
                SELECT id, operation_id, environment_id, created_at, level, kind, message, meta,
                       octet_length(message) + coalesce(octet_length(meta::text), 0) AS size
                FROM logs.messages WHERE environment_id = $1 AND operation_id = $2
                  AND ($3::timestamptz IS NULL OR (created_at, id) > ($3, $4::uuid))
                ORDER BY created_at, id
                LIMIT $5
             ), sized AS (
                SELECT *, sum(size) OVER (ORDER BY created_at, id
                                          ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
                          AS total,
                       count(*) OVER () AS fetched
                FROM page
             )
             SELECT id, operation_id, environment_id, created_at, level, kind, message, meta,
                    fetched
             FROM sized WHERE total <= $6 OR total = size
             ORDER BY created_at, id",
        )
        .bind(environment_id)
        .bind(operation_id)
        .bind(cursor.map(|c| c.started_at()))
        .bind(cursor.map(|c| c.id))
        .bind(limit as i64 + 1)
        .bind(MAX_MESSAGES_PAGE_BYTES as i64)
        .fetch_all(&self.db)
        .await?;
        let fetched = rows.first().map_or(0, |r| r.fetched as usize);
        let mut items = rows
            .into_iter()
            .map(|r| Message::try_from(r.row))
            .collect::<Result<Vec<_>>>()?;
        items.truncate(limit);
        let next_cursor = if fetched > items.len() {
            items.last().map(|m| Cursor::of_message(m).encode())
        } else {
            None
        };
        Ok(Page { items, next_cursor })
    }

    async fn operation(
        &self,
        environment_id: EnvironmentId,
        operation_id: Uuid,
    ) -> Result<Option<Operation>> {
        let row: Option<OperationRow> = sqlx::query_as(
            "SELECT id, environment_id, kind, state, integration, connection, script,
                    started_at, ended_at, error, meta
             FROM logs.operations WHERE environment_id = $1 AND id = $2",
        )
        .bind(environment_id)
        .bind(operation_id)
        .fetch_optional(&self.db)
        .await?;
        row.map(Operation::try_from).transpose()
    }
}

/// The first `limit` messages that fit in `budget` bytes (always the first), and the cursor
/// after the last of them when any were left out.
fn finish_messages(mut items: Vec<Message>, limit: usize, budget: usize) -> Page<Message> {
    let mut total = 0usize;
    let fits = items
        .iter()
        .take(limit)
        .position(|m| {
            total += m.message.len() + m.meta.to_string().len();
            total > budget
        })
        .map_or(items.len().min(limit), |i| i.max(1));
    let more = items.len() > fits;
    items.truncate(fits);
    let next_cursor = if more {
        items.last().map(|m| Cursor::of_message(m).encode())
    } else {
        None
    };
    Page { items, next_cursor }
}

fn finish_page(mut items: Vec<Operation>, limit: usize) -> Result<Page<Operation>> {
    let next_cursor = if items.len() > limit {
        items.truncate(limit);
        items.last().map(|o| Cursor::of(o).encode())
    } else {
        None
    };
    Ok(Page { items, next_cursor })
}

/// OpenSearch / Elasticsearch 7.x sink with monthly indices
/// (`<prefix>-operations-YYYY.MM`, `<prefix>-messages-YYYY.MM`) created from index templates.
pub struct OpenSearchLogSink {
    client: OpenSearch,
    prefix: String,
    templates_ready: AtomicBool,
}

fn os_error(action: &str, e: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::LogSink {
        message: format!("{action}: {e}"),
        source: Some(Box::new(e)),
    }
}

impl OpenSearchLogSink {
    pub fn new(
        url: &str,
        auth: OpenSearchAuth,
        prefix: String,
        sdk: Option<&aws_config::SdkConfig>,
    ) -> Result<Self> {
        let url = url::Url::parse(url).map_err(|e| os_error("url", e))?;
        let mut builder = TransportBuilder::new(SingleNodeConnectionPool::new(url))
            .timeout(std::time::Duration::from_secs(10));
        if auth == OpenSearchAuth::SigV4 {
            let sdk = sdk.ok_or_else(|| Error::log_sink("sigv4: no AWS configuration loaded"))?;
            builder = builder
                .auth(sdk.try_into().map_err(|e| os_error("sigv4", e))?)
                .service_name("es");
        }
        let transport = builder.build().map_err(|e| os_error("client", e))?;
        Ok(Self {
            client: OpenSearch::new(transport),
            prefix,
            templates_ready: AtomicBool::new(false),
        })
    }

    fn index(&self, kind: &str, at: DateTime<Utc>) -> String {
        format!("{}-{kind}-{}", self.prefix, at.format("%Y.%m"))
    }

    async fn send(
        &self,
        method: opensearch::http::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value> {
        let body = body.map(JsonBody::new);
        let response = self
            .client
            .send(
                method,
                path,
                opensearch::http::headers::HeaderMap::new(),
                Option::<&()>::None,
                body,
                None,
            )
            .await
            .map_err(|e| os_error(path, e))?;
        let status = response.status_code();
        let value: Value = response.json().await.map_err(|e| os_error(path, e))?;
        if !status.is_success() {
            let reason = value
                .pointer("/error/reason")
                .and_then(Value::as_str)
                .unwrap_or("request failed");
            return Err(Error::log_sink(format!("{path}: {status}: {reason}")));
        }
        Ok(value)
    }

    /// Installs the index templates once per process, before the first write.
    async fn ensure_templates(&self) -> Result<()> {
        if self.templates_ready.load(Ordering::Acquire) {
            return Ok(());
        }
        let keyword = json!({"type": "keyword"});
        let operations = json!({
            "index_patterns": [format!("{}-operations-*", self.prefix)],
            "template": {
                "settings": {"number_of_shards": 1, "number_of_replicas": 0},
                "mappings": {"dynamic": false, "properties": {
                    "id": keyword, "environment_id": {"type": "long"}, "kind": keyword,
                    "state": keyword, "integration": keyword, "connection": keyword,
                    "script": keyword, "started_at": {"type": "date"},
                    "ended_at": {"type": "date"}, "error": {"type": "text"},
                    "meta": {"type": "object", "enabled": false}
                }}
            }
        });
        let messages = json!({
            "index_patterns": [format!("{}-messages-*", self.prefix)],
            "template": {
                "settings": {"number_of_shards": 1, "number_of_replicas": 0},
                "mappings": {"dynamic": false, "properties": {
                    "id": keyword, "operation_id": keyword, "environment_id": {"type": "long"},
                    "created_at": {"type": "date"}, "level": keyword, "kind": keyword,
                    "message": {"type": "text"}, "meta": {"type": "object", "enabled": false}
                }}
            }
        });
        for (name, body) in [("operations", operations), ("messages", messages)] {
            self.send(
                opensearch::http::Method::Put,
                &format!("/_index_template/{}-{name}", self.prefix),
                Some(body),
            )
            .await?;
        }
        self.templates_ready.store(true, Ordering::Release);
        Ok(())
    }

    async fn operation_ids_matching_text(
        &self,
        environment_id: EnvironmentId,
        text: &str,
    ) -> Result<Vec<String>> {
        let body = json!({
            "size": 0,
            "query": {"bool": {"filter": [{"term": {"environment_id": environment_id}}],
                               "must": [{"match": {"message": {"query": text, "operator": "and"}}}]}},
            "aggs": {"ops": {"terms": {"field": "operation_id", "size": 10000}}}
        });
        let res = self
            .send(
                opensearch::http::Method::Post,
                &format!("/{}-messages-*/_search", self.prefix),
                Some(body),
            )
            .await?;
        Ok(res
            .pointer("/aggregations/ops/buckets")
            .and_then(Value::as_array)
            .map(|b| {
                b.iter()
                    .filter_map(|x| x["key"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default())
    }
}

#[async_trait]
impl LogSink for OpenSearchLogSink {
    async fn write(&self, batch: LogBatch) -> Result<()> {
        if batch.operations.is_empty() && batch.messages.is_empty() {
            return Ok(());
        }
        self.ensure_templates().await?;
        let mut lines: Vec<JsonBody<Value>> = Vec::new();
        for op in &batch.operations {
            lines.push(
                json!({"index": {"_index": self.index("operations", op.started_at), "_id": op.id}})
                    .into(),
            );
            lines.push(
                serde_json::to_value(op)
                    .map_err(|e| os_error("encode", e))?
                    .into(),
            );
        }
        for m in &batch.messages {
            lines.push(
                json!({"index": {"_index": self.index("messages", m.created_at), "_id": m.id}})
                    .into(),
            );
            lines.push(
                serde_json::to_value(m)
                    .map_err(|e| os_error("encode", e))?
                    .into(),
            );
        }
        let response = self
            .client
            .bulk(opensearch::BulkParts::None)
            .body(lines)
            .send()
            .await
            .map_err(|e| os_error("_bulk", e))?;
        let status = response.status_code();
        let value: Value = response.json().await.map_err(|e| os_error("_bulk", e))?;
        if !status.is_success() || value["errors"].as_bool() == Some(true) {
            let reason = value
                .pointer("/items")
                .and_then(Value::as_array)
                .and_then(|items| {
                    items
                        .iter()
                        .find_map(|i| i.pointer("/index/error/reason").and_then(Value::as_str))
                })
                .unwrap_or("request failed");
            return Err(Error::log_sink(format!("_bulk: {status}: {reason}")));
        }
        Ok(())
    }

    async fn search_operations(&self, q: &OperationQuery) -> Result<Page<Operation>> {
        let limit = page_limit(q.limit);
        let mut filter = vec![json!({"term": {"environment_id": q.environment_id}})];
        if !q.kinds.is_empty() {
            filter.push(json!({"terms": {"kind": q.kinds}}));
        }
        if !q.states.is_empty() {
            filter.push(json!({"terms": {"state": q.states}}));
        }
        for (field, value) in [
            ("integration", &q.integration),
            ("connection", &q.connection),
            ("script", &q.script),
        ] {
            if let Some(v) = value {
                filter.push(json!({"term": {field: v}}));
            }
        }
        if q.from.is_some() || q.to.is_some() {
            let mut range = serde_json::Map::new();
            if let Some(from) = q.from {
                range.insert("gte".into(), json!(from));
            }
            if let Some(to) = q.to {
                range.insert("lt".into(), json!(to));
            }
            filter.push(json!({"range": {"started_at": range}}));
        }
        let mut must = Vec::new();
        if let Some(text) = &q.text {
            let ids = self
                .operation_ids_matching_text(q.environment_id, text)
                .await?;
            must.push(json!({"bool": {"should": [
                {"terms": {"id": ids}},
                {"match": {"error": {"query": text, "operator": "and"}}}
            ], "minimum_should_match": 1}}));
        }
        let mut body = json!({
            "size": limit + 1,
            "query": {"bool": {"filter": filter, "must": must}},
            "sort": [{"started_at": "desc"}, {"id": "desc"}]
        });
        if let Some(raw) = &q.cursor {
            let c = Cursor::decode(raw)?;
            body["search_after"] = json!([c.started_at_micros / 1000, c.id.to_string()]);
        }
        let res = self
            .send(
                opensearch::http::Method::Post,
                &format!(
                    "/{}-operations-*/_search?ignore_unavailable=true&allow_no_indices=true",
                    self.prefix
                ),
                Some(body),
            )
            .await?;
        let items = res
            .pointer("/hits/hits")
            .and_then(Value::as_array)
            .map(|hits| {
                hits.iter()
                    .map(|h| {
                        serde_json::from_value::<Operation>(h["_source"].clone())
                            .map_err(|e| os_error("decode operation", e))
                    })
                    .collect::<Result<Vec<_>>>()
            })
            .transpose()?
            .unwrap_or_default();
        finish_page(items, limit)
    }

    async fn messages_page(
        &self,
        environment_id: EnvironmentId,
        operation_id: Uuid,
        query: &MessageQuery,
    ) -> Result<Page<Message>> {
        let limit = page_limit(query.limit);
        let mut body = json!({
            "size": limit + 1,
            "query": {"bool": {"filter": [
                {"term": {"environment_id": environment_id}},
                {"term": {"operation_id": operation_id}}
            ]}},
            "sort": [{"created_at": "asc"}, {"id": "asc"}]
        });
        if let Some(raw) = &query.cursor {
            let c = Cursor::decode(raw)?;
            body["search_after"] = json!([c.started_at_micros / 1000, c.id.to_string()]);
        }
        let res = self
            .send(
                opensearch::http::Method::Post,
                &format!(
                    "/{}-messages-*/_search?ignore_unavailable=true&allow_no_indices=true",
                    self.prefix
                ),
                Some(body),
            )
            .await?;
        let items = res
            .pointer("/hits/hits")
            .and_then(Value::as_array)
            .map(|hits| {
                hits.iter()
                    .map(|h| {
                        serde_json::from_value::<Message>(h["_source"].clone())
                            .map_err(|e| os_error("decode message", e))
                    })
                    .collect::<Result<Vec<_>>>()
            })
            .transpose()?
            .unwrap_or_default();
        Ok(finish_messages(items, limit, MAX_MESSAGES_PAGE_BYTES))
    }

    async fn operation(
        &self,
        environment_id: EnvironmentId,
        operation_id: Uuid,
    ) -> Result<Option<Operation>> {
        let body = json!({
            "size": 1,
            "query": {"bool": {"filter": [
                {"term": {"environment_id": environment_id}},
                {"term": {"id": operation_id}}
            ]}}
        });
        let res = self
            .send(
                opensearch::http::Method::Post,
                &format!(
                    "/{}-operations-*/_search?ignore_unavailable=true&allow_no_indices=true",
                    self.prefix
                ),
                Some(body),
            )
            .await?;
        res.pointer("/hits/hits/0/_source")
            .map(|source| {
                serde_json::from_value::<Operation>(source.clone())
                    .map_err(|e| os_error("decode operation", e))
            })
            .transpose()
    }
}
