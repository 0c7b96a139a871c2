//! The SDK calls beyond the proxy, metadata and checkpoints, with Nango's semantics: the token
//! and the integration (never its client secret), the connection's records, merging
//! strategies, deletion windows across executions, `uncontrolledFetch` under the outbound
//! policy, locks, and other actions and syncs of the same environment.

use serde_json::{Value, json};
use uuid::Uuid;

use lasso_sandbox::{Host, HostError, fetch};
use lasso_services::actions::{self, Trigger};
use lasso_services::connections::{self, Credentials};
use lasso_services::logs::Level;
use lasso_services::records::{self, Cursor, ListQuery, Scope};
use lasso_services::syncs::{self, Selection, SyncIdentifier, SyncMode};
use lasso_services::{Error, ErrorCode, checkpoints, environments, integrations, script_locks};

use super::{LogLine, Task, TaskHost, str_field};

/// Records per `listRecords` page (Nango's).
const LIST_PAGE: i64 = 100;

/// How a model's saves merge with stored records (`nango.setMergingStrategy`).
#[derive(Debug, Clone)]
pub(super) enum Merging {
    Override,
    /// Records another writer modified after this cursor are left alone; `None` until there is
    /// a record to compare with.
    IgnoreIfModifiedAfter(Option<Cursor>),
}

/// An open deletion window (`trackDeletesStart`), kept as a checkpoint of its own so a later
/// execution of the sync continues it: the id its saves are seen under (its mark, made when it
/// opened, holds the database snapshot of that moment).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(super) struct Window {
    run: Uuid,
}

impl Window {
    /// The id the window's saves are seen under.
    pub(super) fn run(&self) -> Uuid {
        self.run
    }
}

fn failed(op: &str, e: impl std::fmt::Display) -> HostError {
    HostError::new(format!("{op}: {e}"))
}

fn required<'a>(args: &'a Value, op: &str, field: &str) -> Result<&'a str, HostError> {
    str_field(args, field)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| HostError::new(format!("{op}: `{field}` is required")))
}

/// Credentials as scripts see them: never a client secret, nor a refresh token.
fn for_scripts(credentials: &Credentials) -> Value {
    let mut value =
        serde_json::to_value(credentials.without_refresh_token()).expect("credentials serialize");
    if let Value::Object(fields) = &mut value {
        fields.remove("client_secret");
    }
    value
}

/// A failed action as Nango's client throws it: `err.response` holds the API's error body.
fn action_failure(action: &str, e: Error) -> HostError {
    let (status, code, payload) = match &e {
        Error::ActionError { payload } => {
            (400, ErrorCode::ActionScriptRuntimeError, payload.clone())
        }
        Error::ScriptFailed { code, payload, .. } => (424, *code, payload.clone()),
        Error::NotFound { code, .. } => (404, *code, Value::Null),
        Error::Invalid { .. } => (400, ErrorCode::InvalidRequest, Value::Null),
        _ => (500, ErrorCode::ServerError, Value::Null),
    };
    let message = match &e {
        Error::ActionError { payload } => payload["message"]
            .as_str()
            .map_or_else(|| e.to_string(), str::to_string),
        _ => e.to_string(),
    };
    HostError {
        message: format!("triggerAction(`{action}`): {message}"),
        response: Some(json!({
            "status": status,
            "headers": {},
            "data": {"error": {"code": code, "message": message, "payload": payload}},
        })),
    }
}

impl Task {
    fn scope(&self, model: &str) -> Scope {
        Scope::new(self.connection.id, model, None)
    }

    fn window_key(&self, model: &str) -> String {
        format!("{}:trackDeletes:{model}", self.function.name)
    }

    /// The task's connection as stored now, its token refreshed first when it expires soon.
    async fn fresh_connection(&self) -> Result<connections::Connection, HostError> {
        let c = &self.connection;
        let stored = connections::get(
            &self.ctx.db,
            &self.ctx.cipher,
            c.environment_id,
            &c.provider_config_key,
            &c.connection_id,
        )
        .await?;
        Ok(lasso_services::refresh::fresh(&self.ctx, stored, false).await?)
    }

    /// Nango's `getToken`: an OAuth2 access token as a string, OAuth1's pair, else the
    /// credentials object; refreshed first when it expires soon.
    pub(super) async fn get_token(&self) -> Result<Value, HostError> {
        let fresh = self.fresh_connection().await?;
        Ok(match &fresh.credentials {
            Credentials::OAuth2(token) => Value::String(token.access_token.clone()),
            other => for_scripts(other),
        })
    }

    /// The connection as `getConnection` shows it, without a client secret.
    pub(super) async fn get_connection(&self) -> Result<Value, HostError> {
        let fresh = self.fresh_connection().await?;
        let mut answer = connections::public_json(&fresh, &fresh.credentials);
        if let Value::Object(credentials) = &mut answer["credentials"] {
            credentials.remove("client_secret");
        }
        Ok(answer)
    }

    /// Nango's `getIntegration` (`GET /integrations/:key`'s data, with `include` of
    /// `credentials` and `webhook`), except that the credentials never carry the client or
    /// webhook secret: scripts do not receive them.
    pub(super) async fn get_integration(&self, args: &Value) -> Result<Value, HostError> {
        let include: Vec<&str> = args["include"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let c = &self.connection;
        let i = integrations::get(&self.ctx.db, c.environment_id, &c.provider_config_key).await?;
        let provider = self.ctx.providers.get(&i.provider);
        let mut out = json!({
            "unique_key": i.unique_key,
            "provider": i.provider,
            "display_name": i.display_name.clone().or_else(|| provider.map(|p| p.display_name.clone())),
            "logo": lasso_services::providers::logo_url(&i.provider),
            "forward_webhooks": i.forward_webhooks,
            "created_at": i.created_at,
            "updated_at": i.updated_at,
        });
        if include.contains(&"credentials") {
            out["credentials"] = match &i.client_id {
                None => Value::Null,
                Some(client_id) => json!({
                    "type": provider.map_or("OAUTH2", |p| p.auth_mode.as_str()),
                    "client_id": client_id,
                    "scopes": i.scopes,
                }),
            };
        }
        if include.contains(&"webhook") {
            let env = environments::find_by_id(&self.ctx.db, c.environment_id)
                .await?
                .ok_or_else(|| HostError::new("getIntegration: the environment is gone"))?;
            out["webhook_url"] = json!(format!(
                "{}/webhook/{}/{}",
                self.ctx.config.public_url, env.uuid, i.unique_key
            ));
        }
        Ok(out)
    }

    /// The connection's records of `model` with the given ids (deleted ones too, as Nango
    /// answers), with `_nango_metadata`.
    pub(super) async fn records_by_ids(&self, args: &Value) -> Result<Value, HostError> {
        let model = required(args, "getRecordsByIds", "model")?;
        let ids: Vec<String> = args["ids"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        if ids.is_empty() {
            return Ok(json!([]));
        }
        let mut query = ListQuery {
            limit: ids.len().min(records::MAX_LIST_LIMIT as usize) as i64,
            ids,
            ..ListQuery::default()
        };
        let scope = self.scope(model);
        let mut found = Vec::new();
        loop {
            let page = records::list(&self.ctx.db, &scope, &query).await?;
            found.extend(page.records);
            match page.next_cursor {
                Some(next) => query.cursor = Some(Cursor::decode(&next)?),
                None => return Ok(Value::Array(found)),
            }
        }
    }

    /// One page of the connection's records of `model`, in modification order.
    pub(super) async fn list_records(&self, args: &Value) -> Result<Value, HostError> {
        let model = required(args, "listRecords", "model")?;
        let cursor = str_field(args, "cursor")
            .map(Cursor::decode)
            .transpose()
            .map_err(|e| failed("listRecords", e))?;
        let query = ListQuery {
            cursor,
            limit: LIST_PAGE,
            ..ListQuery::default()
        };
        let page = records::list(&self.ctx.db, &self.scope(model), &query).await?;
        Ok(json!({"records": page.records, "next_cursor": page.next_cursor}))
    }

    /// A script's fetch of any URL the outbound policy permits, with the script's own headers
    /// and nothing of Lasso's (a refused destination answers `{refused}`: the SDK throws
    /// Nango's `url_not_allowed` ActionError).
    pub(super) async fn uncontrolled_fetch(
        &self,
        host: &TaskHost,
        args: &Value,
    ) -> Result<Value, HostError> {
        let started = std::time::Instant::now();
        let fetched = fetch::send(&self.ctx.fetch_http, args, &self.budget).await?;
        if let Some((status, line)) = fetched.log {
            host.record(LogLine {
                level: if status >= 400 {
                    Level::Warn
                } else {
                    Level::Info
                },
                message: format!("{line} (uncontrolledFetch)"),
                meta: json!({"type": "http", "method": args["method"], "status": status,
                             "duration_ms": started.elapsed().as_millis() as u64}),
            });
        }
        Ok(fetched.answer)
    }

    pub(super) async fn locks(
        &self,
        host: &TaskHost,
        op: &str,
        args: &Value,
    ) -> Result<Value, HostError> {
        let db = &self.ctx.db;
        let env = self.connection.environment_id;
        let key = || str_field(args, "key").unwrap_or_default();
        let answer = match op {
            "tryAcquireLock" => {
                let ttl = args["ttlMs"].as_f64().unwrap_or(0.0);
                script_locks::try_acquire(db, env, key(), host.task_id, ttl.ceil() as i64).await
            }
            "releaseLock" => script_locks::release(db, env, key(), host.task_id).await,
            _ => script_locks::release_all(db, host.task_id)
                .await
                .map(|_| true),
        };
        answer.map(Value::Bool).map_err(|e| failed(op, e))
    }

    /// Runs another action of the environment and answers its output; waits at most until
    /// this run's own deadline.
    pub(super) async fn trigger_action(
        &self,
        host: &TaskHost,
        args: &Value,
    ) -> Result<Value, HostError> {
        let op = "triggerAction";
        let action = required(args, op, "action")?.to_string();
        let trigger = Trigger {
            integration: required(args, op, "providerConfigKey")?.to_string(),
            connection_id: required(args, op, "connectionId")?.to_string(),
            action: action.clone(),
            input: args.get("input").cloned().unwrap_or(Value::Null),
            max_retries: 0,
            run_async: false,
        };
        actions::run_for_script(
            &self.ctx,
            self.connection.environment_id,
            trigger,
            host.deadline,
        )
        .await
        .map_err(|e| action_failure(&action, e))
    }

    /// Nango's `triggerSync`: a run of one sync now (of one connection, or of all of the
    /// integration's), as `POST /sync/trigger`.
    pub(super) async fn trigger_sync(&self, args: &Value) -> Result<Value, HostError> {
        let op = "triggerSync";
        let sync: SyncIdentifier = serde_json::from_value(args["sync"].clone())
            .map_err(|_| failed(op, "`sync` must be a name or {name, variant}"))?;
        let selection = Selection {
            provider_config_key: required(args, op, "providerConfigKey")?.to_string(),
            connection_id: str_field(args, "connectionId").map(str::to_string),
            syncs: vec![sync.into_name()?],
        };
        let opts = &args["opts"];
        let mode = SyncMode::from_request(
            str_field(args, "sync_mode"),
            opts["reset"].as_bool().unwrap_or(false),
            opts["emptyCache"].as_bool().unwrap_or(false),
            args["full_resync"].as_bool().unwrap_or(false),
        )?;
        syncs::trigger(&self.ctx, self.connection.environment_id, &selection, mode).await?;
        Ok(Value::Null)
    }

    /// Nango's `startSync`: starts paused schedules, their next run due now.
    pub(super) async fn start_sync(&self, args: &Value) -> Result<Value, HostError> {
        let op = "startSync";
        let names = args["syncs"]
            .as_array()
            .ok_or_else(|| failed(op, "`syncs` must be an array"))?
            .iter()
            .map(|s| {
                serde_json::from_value::<SyncIdentifier>(s.clone())
                    .map_err(|_| failed(op, "each sync must be a name or {name, variant}"))?
                    .into_name()
                    .map_err(HostError::from)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let selection = Selection {
            provider_config_key: required(args, op, "providerConfigKey")?.to_string(),
            connection_id: str_field(args, "connectionId").map(str::to_string),
            syncs: names,
        };
        syncs::start(&self.ctx, self.connection.environment_id, &selection).await?;
        Ok(Value::Null)
    }
}

impl TaskHost {
    /// Nango's `setMergingStrategy`: `override` (the default) or `ignore_if_modified_after`,
    /// from the model's last record on; once per model and execution.
    pub(super) async fn set_merging(&self, task: &Task, args: &Value) -> Result<Value, HostError> {
        let op = "setMergingStrategy";
        let model = required(args, op, "model")?;
        task.check_model(model)?;
        if self
            .merging
            .lock()
            .expect("merging lock")
            .contains_key(model)
        {
            self.log(
                Level::Warn,
                &format!("Merging strategy for model {model} is already set. Skipping"),
            );
            return Ok(Value::Null);
        }
        let strategy = str_field(args, "strategy").unwrap_or_default();
        let merging = match strategy {
            "override" => Merging::Override,
            "ignore_if_modified_after" => Merging::IgnoreIfModifiedAfter(
                records::last_cursor(&task.ctx.db, &task.scope(model)).await?,
            ),
            other => {
                return Err(failed(op, format!("Unsupported merging strategy: {other}")));
            }
        };
        self.merging
            .lock()
            .expect("merging lock")
            .insert(model.to_string(), merging);
        self.log(
            Level::Info,
            &format!("Merging strategy set to '{strategy}' for model {model}."),
        );
        Ok(Value::Null)
    }

    /// The guard of `model`'s saves under `ignore_if_modified_after`, if any.
    pub(super) fn merging_guard(&self, model: &str) -> (bool, Option<Cursor>) {
        match self.merging.lock().expect("merging lock").get(model) {
            Some(Merging::IgnoreIfModifiedAfter(cursor)) => (true, cursor.clone()),
            _ => (false, None),
        }
    }

    /// After a guarded write: the writer's own last record is the new guard.
    pub(super) fn advance_merging(&self, model: &str, last: Option<Cursor>) {
        if let (Some(last), Some(Merging::IgnoreIfModifiedAfter(cursor))) = (
            last,
            self.merging.lock().expect("merging lock").get_mut(model),
        ) {
            *cursor = Some(last);
        }
    }

    /// The deletion window open for `model`, read once per execution.
    pub(super) async fn window(
        &self,
        task: &Task,
        model: &str,
    ) -> Result<Option<Window>, HostError> {
        if let Some(known) = self.tracking.lock().expect("tracking lock").get(model) {
            return Ok(known.clone());
        }
        let stored = checkpoints::get(&task.ctx.db, task.connection.id, &task.window_key(model))
            .await?
            .and_then(|v| serde_json::from_value::<Window>(v).ok());
        self.tracking
            .lock()
            .expect("tracking lock")
            .insert(model.to_string(), stored.clone());
        Ok(stored)
    }

    /// Nango's deletion detection: `trackDeletesStart` opens a window for the model unless one
    /// is open (a sync that checkpoints and resumes calls it in each execution), and
    /// `trackDeletesEnd`, in whichever execution finished saving everything, deletes the
    /// records no save since the window opened has seen and answers their ids.
    pub(super) async fn track_deletes(
        &self,
        task: &Task,
        start: bool,
        model: &str,
    ) -> Result<Value, HostError> {
        if task.run.is_some() {
            return Err(HostError::new(
                "trackDeletesStart/End: this sync already detects deletions with `trackDeletes: true`; use one or the other",
            ));
        }
        let db = &task.ctx.db;
        let key = task.window_key(model);
        let open = self.window(task, model).await?;
        if start {
            if open.is_none() {
                let window = Window {
                    run: Uuid::new_v4(),
                };
                records::begin_window(db, window.run, self.task_id).await?;
                let stored = serde_json::to_value(&window).expect("window serializes");
                checkpoints::save(db, task.connection.id, &key, &stored).await?;
                self.tracking
                    .lock()
                    .expect("tracking lock")
                    .insert(model.to_string(), Some(window));
            }
            return Ok(Value::Null);
        }
        let Some(window) = open else {
            return Err(HostError::new(format!(
                "No track deletes starting point found for model '{model}': call trackDeletesStart('{model}') first"
            )));
        };
        let scope = task.scope(model);
        // Seen sets are unlogged: after crash recovery the window's mark is gone with what it
        // saw, and deleting then would delete what was seen. Nothing is deleted; the next
        // window will.
        let deleted = match records::delete_unseen_keys(db, &scope, window.run).await? {
            Some(keys) => keys,
            None => {
                self.log(
                    Level::Warn,
                    &format!(
                        "trackDeletesEnd('{model}'): the database lost what the window saw (it restarted since trackDeletesStart); nothing was deleted"
                    ),
                );
                Vec::new()
            }
        };
        records::forget_run(db, window.run).await?;
        checkpoints::clear(db, task.connection.id, &key).await?;
        self.tracking
            .lock()
            .expect("tracking lock")
            .insert(model.to_string(), None);
        self.results
            .lock()
            .expect("results lock")
            .entry(model.to_string())
            .or_default()
            .deleted += deleted.len() as u64;
        Ok(json!({ "deletedKeys": deleted }))
    }
}
