//! What a task's `nango` object reaches: the proxy with the task's connection, the records of
//! that connection, its metadata and checkpoint, the environment's variables, and (see
//! [`sdk`]) its token and integration, locks, `uncontrolledFetch`, and the actions and syncs of
//! its environment. Nothing of any other environment.

mod sdk;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::time::Instant as Deadline;

use async_trait::async_trait;
use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::{Value, json};
use uuid::Uuid;

use lasso_sandbox::{self as sandbox, BatchOp, Host, HostError, RunBudget};
use lasso_services::Context;
use lasso_services::connections::{self, Connection};
use lasso_services::logs::Level;
use lasso_services::proxy::{self, ProxyRequest};
use lasso_services::queue::ModelResult;
use lasso_services::records::{self, Scope};
use lasso_services::scripts::store::DeployedFunction;
use lasso_services::{checkpoints, environments};

/// One line the script logged, or one HTTP call it made.
#[derive(Debug, Clone)]
pub struct LogLine {
    pub level: Level,
    pub message: String,
    pub meta: Value,
}

/// Why a run whose seen set the database lost deletes nothing.
pub const SEEN_SET_LOST: &str = "the database lost this run's seen set (it restarted or failed over while the run was saving), so nothing was deleted; the next full run detects deletions again";

/// Lines kept per run; past that, lines are counted, not stored.
const MAX_LOG_LINES: usize = 10_000;

struct Task {
    ctx: Context,
    connection: Connection,
    function: DeployedFunction,
    /// A full sync's run id, to record the ids it sees.
    run: Option<Uuid>,
    /// The run's limits: what the host holds for the script (answers being read) counts
    /// against its memory.
    budget: Arc<RunBudget>,
}

pub struct TaskHost {
    task: Option<Task>,
    /// The task: owner of the locks the script takes, and the id a deletion window it opens
    /// sees saves under.
    task_id: Uuid,
    /// Until when the script may wait (its run's deadline).
    deadline: Deadline,
    results: Mutex<BTreeMap<String, ModelResult>>,
    /// Deletion windows by model, as read in this execution (`None`: none open).
    tracking: Mutex<BTreeMap<String, Option<sdk::Window>>>,
    /// `setMergingStrategy` by model.
    merging: Mutex<BTreeMap<String, sdk::Merging>>,
    logs: Mutex<(Vec<LogLine>, usize)>,
}

impl TaskHost {
    pub fn new(
        ctx: Context,
        task_id: Uuid,
        connection: Connection,
        function: DeployedFunction,
        run: Option<Uuid>,
        budget: Arc<RunBudget>,
    ) -> Self {
        Self {
            deadline: Deadline::now() + ctx.config.script_timeout,
            task: Some(Task {
                ctx,
                connection,
                function,
                run,
                budget,
            }),
            task_id,
            results: Mutex::default(),
            tracking: Mutex::default(),
            merging: Mutex::default(),
            logs: Mutex::default(),
        }
    }

    /// A bare script's host: it can log, nothing else (so it holds no locks and opens no
    /// windows: no task id).
    pub fn without_connection() -> Self {
        Self {
            task: None,
            task_id: Uuid::nil(),
            deadline: Deadline::now(),
            results: Mutex::default(),
            tracking: Mutex::default(),
            merging: Mutex::default(),
            logs: Mutex::default(),
        }
    }

    /// The connection's secret values, to keep out of logs.
    pub fn secrets(&self) -> Vec<String> {
        self.task
            .as_ref()
            .map(|t| t.connection.secrets())
            .unwrap_or_default()
    }

    /// When the run ends: the locks the script still holds are released (as Nango does).
    pub async fn release_locks(&self) {
        if let Some(task) = &self.task
            && let Err(e) =
                lasso_services::script_locks::release_all(&task.ctx.db, self.task_id).await
        {
            tracing::warn!(task = %self.task_id, error = %e, "could not release the run's locks");
        }
    }

    pub fn results(&self) -> BTreeMap<String, ModelResult> {
        self.results.lock().expect("results lock").clone()
    }

    /// The lines logged, and how many more were dropped past the limit.
    pub fn take_logs(&self) -> (Vec<LogLine>, usize) {
        std::mem::take(&mut *self.logs.lock().expect("logs lock"))
    }

    fn record(&self, line: LogLine) {
        let mut logs = self.logs.lock().expect("logs lock");
        if logs.0.len() < MAX_LOG_LINES {
            logs.0.push(line);
        } else {
            logs.1 += 1;
        }
    }

    fn task(&self) -> Result<&Task, HostError> {
        self.task
            .as_ref()
            .ok_or_else(|| HostError::new("this script runs without a connection"))
    }
}

fn str_field<'a>(args: &'a Value, name: &str) -> Option<&'a str> {
    args.get(name).and_then(Value::as_str)
}

/// Nango's proxy configuration (`{endpoint, method, params, data, headers, retries, retryOn,
/// baseUrlOverride}`) as a proxy request.
fn proxy_request(args: &Value) -> Result<ProxyRequest, HostError> {
    let endpoint = str_field(args, "endpoint")
        .ok_or_else(|| HostError::new("proxy: `endpoint` is required"))?;
    let method = str_field(args, "method")
        .unwrap_or("GET")
        .to_ascii_uppercase();
    let method = reqwest::Method::from_bytes(method.as_bytes())
        .map_err(|_| HostError::new(format!("proxy: `{method}` is not an HTTP method")))?;
    let mut endpoint = endpoint.to_string();
    match args.get("params") {
        Some(Value::Object(params)) if !params.is_empty() => {
            let mut query = url::form_urlencoded::Serializer::new(String::new());
            for (k, v) in params {
                match v {
                    Value::Null => {}
                    Value::String(s) => {
                        query.append_pair(k, s);
                    }
                    other => {
                        query.append_pair(k, &other.to_string());
                    }
                }
            }
            let query = query.finish();
            endpoint.push(if endpoint.contains('?') { '&' } else { '?' });
            endpoint.push_str(&query);
        }
        Some(Value::String(q)) if !q.is_empty() => {
            endpoint.push(if endpoint.contains('?') { '&' } else { '?' });
            endpoint.push_str(q.trim_start_matches('?'));
        }
        _ => {}
    }
    let mut request = ProxyRequest::new(method, endpoint);
    let mut json_body = false;
    request.body = match args.get("data") {
        None | Some(Value::Null) => Bytes::new(),
        Some(Value::String(s)) => Bytes::from(s.clone()),
        Some(other) => {
            json_body = true;
            Bytes::from(other.to_string())
        }
    };
    let mut headers = HeaderMap::new();
    if let Some(Value::Object(given)) = args.get("headers") {
        for (name, value) in given {
            let value = match value {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| HostError::new(format!("proxy: `{name}` is not a header name")))?;
            let value = HeaderValue::from_str(&value).map_err(|_| {
                HostError::new(format!("proxy: header `{name}` has an invalid value"))
            })?;
            headers.insert(name, value);
        }
    }
    if json_body && !headers.contains_key(reqwest::header::CONTENT_TYPE) {
        headers.insert(
            reqwest::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
    }
    request.headers = headers;
    request.retries = args.get("retries").and_then(Value::as_u64).unwrap_or(0) as u32;
    request.retry_on = args
        .get("retryOn")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_u64().map(|n| n as u16))
                .collect()
        })
        .unwrap_or_default();
    request.base_url_override = str_field(args, "baseUrlOverride").map(str::to_string);
    Ok(request)
}

impl Task {
    async fn proxy(&self, host: &TaskHost, args: &Value) -> Result<Value, HostError> {
        let request = proxy_request(args)?;
        // Read again each call: an earlier call may have refreshed the token.
        let connection = connections::get(
            &self.ctx.db,
            &self.ctx.cipher,
            self.connection.environment_id,
            &self.connection.provider_config_key,
            &self.connection.connection_id,
        )
        .await?;
        let started = Instant::now();
        let response = proxy::send(&self.ctx, connection, &request).await?;
        let status = response.status().as_u16();
        let headers = sandbox::response_headers(response.headers());
        const WHAT: &str = "proxy: the answer";
        let budget = &self.budget;
        // The body's buffer, then its parsed copy, are held against the run's memory.
        let mut held = budget.reserve(WHAT, 0)?;
        let mut body = Vec::new();
        let mut stream = response;
        while let Some(chunk) = stream.chunk().await.map_err(|e| {
            HostError::new(format!(
                "proxy: reading the answer failed: {}",
                e.without_url()
            ))
        })? {
            let needed = body.len() + chunk.len();
            budget.check_response(WHAT, needed)?;
            if needed > body.capacity() {
                let capacity = needed.max(body.capacity() * 2);
                let more = capacity.saturating_sub(held.bytes());
                budget.grow(&mut held, WHAT, more)?;
                body.reserve_exact(capacity - body.len());
            }
            body.extend_from_slice(&chunk);
        }
        budget.grow(&mut held, WHAT, body.len())?;
        let data = serde_json::from_slice(&body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
        // The endpoint as the script wrote it: the base URL and credentials stay out of logs.
        host.record(LogLine {
            level: if status >= 400 { Level::Warn } else { Level::Info },
            message: format!("{} {} -> {status}", request.method, request.endpoint),
            meta: json!({"type": "http", "method": request.method.as_str(), "endpoint": request.endpoint,
                         "status": status, "duration_ms": started.elapsed().as_millis() as u64}),
        });
        let answer = json!({"status": status, "headers": headers, "data": data});
        if status >= 400 {
            return Err(HostError {
                message: format!(
                    "the provider answered {status} to {} {}",
                    request.method, request.endpoint
                ),
                response: Some(answer),
            });
        }
        Ok(answer)
    }

    fn check_model(&self, model: &str) -> Result<(), HostError> {
        let declared = &self.function.config.output;
        if declared.is_empty() || declared.iter().any(|m| m == model) {
            Ok(())
        } else {
            Err(HostError::new(format!(
                "model `{model}` is not an output of `{}` (declared: {})",
                self.function.name,
                declared.join(", ")
            )))
        }
    }
}

#[async_trait]
impl Host for TaskHost {
    async fn call(&self, op: &str, args: Value) -> Result<Value, HostError> {
        let task = self.task()?;
        let db = &task.ctx.db;
        let c = &task.connection;
        match op {
            "proxy" => task.proxy(self, &args).await,
            "getConnection" => task.get_connection().await,
            "getToken" => task.get_token().await,
            "getIntegration" => task.get_integration(&args).await,
            "getRecordsByIds" => task.records_by_ids(&args).await,
            "listRecords" => task.list_records(&args).await,
            "setMergingStrategy" => self.set_merging(task, &args).await,
            "uncontrolledFetch" => task.uncontrolled_fetch(self, &args).await,
            "tryAcquireLock" | "releaseLock" | "releaseAllLocks" => {
                task.locks(self, op, &args).await
            }
            "triggerAction" => task.trigger_action(self, &args).await,
            "triggerSync" => task.trigger_sync(&args).await,
            "startSync" => task.start_sync(&args).await,
            "getMetadata" => {
                let fresh = connections::get(
                    db,
                    &task.ctx.cipher,
                    c.environment_id,
                    &c.provider_config_key,
                    &c.connection_id,
                )
                .await?;
                Ok(fresh.metadata.unwrap_or_else(|| json!({})))
            }
            "setMetadata" | "updateMetadata" => {
                let Value::Object(metadata) = args else {
                    return Err(HostError::new(format!("{op}: metadata must be an object")));
                };
                connections::write_metadata(
                    db,
                    c.environment_id,
                    &c.provider_config_key,
                    std::slice::from_ref(&c.connection_id),
                    &metadata,
                    op == "updateMetadata",
                )
                .await?;
                Ok(Value::Null)
            }
            "getCheckpoint" => Ok(checkpoints::get(db, c.id, &task.function.name)
                .await?
                .unwrap_or(Value::Null)),
            "saveCheckpoint" => {
                checkpoints::save(db, c.id, &task.function.name, &args).await?;
                Ok(Value::Null)
            }
            "clearCheckpoint" => {
                checkpoints::clear(db, c.id, &task.function.name).await?;
                Ok(Value::Null)
            }
            "trackDeletesStart" | "trackDeletesEnd" => {
                let model = str_field(&args, "model")
                    .ok_or_else(|| HostError::new(format!("{op}: the model name is required")))?;
                task.check_model(model)?;
                self.track_deletes(task, op == "trackDeletesStart", model)
                    .await
            }
            "getEnvironmentVariables" => {
                let vars = environments::variables(db, &task.ctx.cipher, c.environment_id).await?;
                Ok(serde_json::to_value(vars).expect("variables serialize"))
            }
            other => Err(HostError::new(format!("`{other}` is not a nango function"))),
        }
    }

    async fn batch(&self, op: BatchOp, model: &str, records: Vec<Value>) -> Result<(), HostError> {
        let task = self.task()?;
        task.check_model(model)?;
        let scope = Scope::new(task.connection.id, model, None);
        let db = &task.ctx.db;
        let mut results = ModelResult::default();
        let (guarded, guard) = self.merging_guard(model);
        match op {
            BatchOp::Save => {
                let window = self.window(task, model).await?.map(|w| w.run());
                let (summary, last) = records::save_unless_modified_after(
                    db,
                    &scope,
                    &records,
                    window.or(task.run),
                    guard.as_ref(),
                )
                .await?;
                results.added = summary.added;
                results.updated = summary.updated;
                if guarded {
                    self.advance_merging(model, last);
                }
            }
            BatchOp::Update => results.updated = records::update(db, &scope, &records).await?,
            BatchOp::Delete => {
                let (deleted, last) =
                    records::delete_unless_modified_after(db, &scope, &records, guard.as_ref())
                        .await?;
                results.deleted = deleted;
                if guarded {
                    self.advance_merging(model, last);
                }
            }
        }
        let mut all = self.results.lock().expect("results lock");
        let entry = all.entry(model.to_string()).or_default();
        entry.added += results.added;
        entry.updated += results.updated;
        entry.deleted += results.deleted;
        Ok(())
    }

    fn log(&self, level: Level, message: &str) {
        self.record(LogLine {
            level,
            message: message.to_string(),
            meta: json!({"type": "log"}),
        });
    }
}
