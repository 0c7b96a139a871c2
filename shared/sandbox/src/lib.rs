//! The JavaScript sandbox (QuickJS through rquickjs). Every run gets a fresh runtime and
//! context with a memory limit and a deadline; modules load only from the function's bundle,
//! and the only way out is the `nango` object, whose calls go to a [`Host`].
//!
//! Limits take two mechanisms: the interrupt handler stops pure-JS loops (even ones spinning on
//! already-resolved promises, which never yield to tokio), and a tokio timeout stops a script
//! stuck waiting on something that never settles. Cancellation uses both too, after a grace
//! period: a cancelled run (or one about to reach its deadline) first sees `nango.abortSignal`
//! abort, as Nango's scripts do, and is stopped for good [`abort_grace`] later.

pub mod budget;
mod bytecode;
pub mod commonjs;
pub mod convert;
mod describe;
pub mod fetch;
mod memory;
pub mod node;
pub mod packages;
mod stack;

pub use budget::RunBudget;
pub use describe::describe;
pub use stack::remap_stack;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use rquickjs::context::intrinsic;
use rquickjs::loader::{Loader, Resolver};
use rquickjs::prelude::Async;
use rquickjs::{
    AsyncContext, AsyncRuntime, CatchResultExt, CaughtError, Ctx, Function, Module, Object,
    Promise, Value,
};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use tokio_util::sync::CancellationToken;

use lasso_core::logs::Level;
use lasso_core::scripts::Bundle;

const SDK_PRELUDE: &str = include_str!("sdk.js");
/// The prelude runs as a module under a name no import can resolve.
const PRELUDE_NAME: &str = "lasso:prelude";
const SDK_MODULE: &str = include_str!("sdk_module.js");
/// The module name scripts import the SDK from.
pub const SDK_MODULE_NAME: &str = "nango";

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The QuickJS heap and the host's buffers for the run together.
    pub memory_bytes: usize,
    pub timeout: Duration,
    /// Host calls (`nango.*` that reach the host) in flight at once.
    pub max_concurrent_calls: usize,
    /// Bytes of log lines over the whole run.
    pub max_log_bytes: usize,
    /// The largest provider answer one call may read.
    pub max_response_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory_bytes: 64 * 1024 * 1024,
            timeout: Duration::from_secs(300),
            max_concurrent_calls: 16,
            max_log_bytes: 8 * 1024 * 1024,
            max_response_bytes: 16 * 1024 * 1024,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScriptErrorKind {
    /// The script threw (or its promise rejected).
    Exception,
    /// An action threw `ActionError`; its payload goes back to the caller.
    ActionError,
    Timeout,
    OutOfMemory,
    Cancelled,
    /// The bundle did not load or has no default export to run.
    InvalidScript,
    /// The returned value cannot be represented as JSON.
    InvalidOutput,
}

/// A failed run, as recorded on the task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct ScriptError {
    pub kind: ScriptErrorKind,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stack: Option<String>,
    /// `ActionError`'s payload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<Json>,
}

impl ScriptError {
    pub fn new(kind: ScriptErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            stack: None,
            payload: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchOp {
    Save,
    Update,
    Delete,
}

/// An error a host call reports to the script (thrown in JavaScript).
#[derive(Debug, Clone, PartialEq)]
pub struct HostError {
    pub message: String,
    /// For proxy calls the provider answered with an error: `{status, headers, data}`, which the
    /// script sees as `err.response`.
    pub response: Option<Json>,
}

impl HostError {
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            response: None,
        }
    }
}

impl From<lasso_core::Error> for HostError {
    fn from(e: lasso_core::Error) -> Self {
        Self::new(e.to_string())
    }
}

/// What the `nango` object reaches.
#[async_trait]
pub trait Host: Send + Sync {
    /// `op` is one of `proxy`, `getConnection`, `getToken`, `getIntegration` (`{include}`),
    /// `getMetadata`, `setMetadata`, `updateMetadata`, `getCheckpoint`, `saveCheckpoint`,
    /// `clearCheckpoint`, `trackDeletesStart` / `trackDeletesEnd` (`{model}`; the end answers
    /// `{deletedKeys}`), `getEnvironmentVariables`, `getRecordsByIds` (`{model, ids}`: the
    /// records), `listRecords` (`{model, cursor}`: `{records, next_cursor}`),
    /// `setMergingStrategy` (`{strategy, model}`), `uncontrolledFetch` (`{url, method, headers,
    /// body}` with the body in base64: `{status, statusText, url, redirected, headers: [[name,
    /// value]], body}`, or `{refused}` when the outbound policy refuses the URL),
    /// `tryAcquireLock` (`{key, ttlMs}`: a boolean), `releaseLock` (`{key}`),
    /// `releaseAllLocks`, `triggerAction` (`{providerConfigKey, connectionId, action, input}`:
    /// its output), `triggerSync` (`{providerConfigKey, connectionId, sync, opts | sync_mode |
    /// full_resync}`), `startSync` (`{providerConfigKey, syncs, connectionId}`).
    async fn call(&self, op: &str, args: Json) -> Result<Json, HostError>;
    async fn batch(&self, op: BatchOp, model: &str, records: Vec<Json>) -> Result<(), HostError>;
    fn log(&self, level: Level, message: &str);
}

/// Facts about the run the script reads on `nango`.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunInfo {
    pub connection_id: Option<String>,
    pub provider_config_key: Option<String>,
    pub provider: Option<String>,
    pub variant: Option<String>,
    pub last_sync_date: Option<chrono::DateTime<chrono::Utc>>,
    /// The provider's pagination settings (the catalog's `proxy.paginate`).
    pub paginate: Option<Json>,
    /// The same for every attempt of one call or run, so scripts can use it as an idempotency
    /// key (`nango.executionId`, Lasso's own: Nango has none).
    pub execution_id: Option<String>,
}

/// Resolves and loads modules from the bundle only: no filesystem, no host modules.
#[derive(Clone)]
struct BundleModules(Arc<BTreeMap<String, String>>);

impl Resolver for BundleModules {
    fn resolve<'js>(
        &mut self,
        _ctx: &Ctx<'js>,
        base: &str,
        name: &str,
        _attributes: Option<rquickjs::loader::ImportAttributes<'js>>,
    ) -> rquickjs::Result<String> {
        let refused =
            |message: &str| Err(rquickjs::Error::new_resolving_message(base, name, message));
        if name == SDK_MODULE_NAME || self.0.contains_key(name) {
            return Ok(name.to_string());
        }
        if let Some(module) = node::resolve(name) {
            return Ok(module);
        }
        if base.starts_with(packages::PREFIX) && name.starts_with('.') {
            return packages::resolve_relative(base, name)
                .map_or_else(|| refused("no such file in the package"), Ok);
        }
        if packages::is_provided(name) {
            return packages::resolve_bare(name).or_else(|message| refused(&message));
        }
        refused(
            "only the bundle's own modules, `nango`, the packages and the Node modules Lasso provides can be imported",
        )
    }
}

impl Loader for BundleModules {
    fn load<'js>(
        &mut self,
        ctx: &Ctx<'js>,
        name: &str,
        _attributes: Option<rquickjs::loader::ImportAttributes<'js>>,
    ) -> rquickjs::Result<Module<'js, rquickjs::module::Declared>> {
        if name == SDK_MODULE_NAME {
            return bytecode::declare(ctx, name, SDK_MODULE, bytecode::Debug::Strip);
        }
        if let Some(source) = self.0.get(name) {
            if name.ends_with(".cjs") {
                let wrapped = commonjs::wrap(name, source, provided_kind);
                return bytecode::declare(ctx, name, &wrapped, bytecode::Debug::Keep);
            }
            return bytecode::declare(ctx, name, source, bytecode::Debug::Keep);
        }
        let provided = packages::source(name)
            .map(|(_, source)| source)
            .or_else(|| node::source(name));
        match provided {
            Some(source) => bytecode::declare_static(ctx, name, source),
            None => Err(rquickjs::Error::new_loading(name)),
        }
    }
}

/// What a CommonJS module's `require` of `specifier` can get (see [`commonjs`]).
fn provided_kind(specifier: &str) -> Option<commonjs::Kind> {
    if node::resolve(specifier).is_some() {
        Some(commonjs::Kind::Node)
    } else if specifier == SDK_MODULE_NAME || packages::resolve_bare(specifier).is_ok() {
        Some(commonjs::Kind::Package)
    } else {
        None
    }
}

/// The built-in objects a script gets: the language and its standard library, without
/// extras a fresh context need not pay for (performance timers, DOMException).
type Intrinsics = (
    intrinsic::Date,
    intrinsic::Eval,
    intrinsic::RegExpCompiler,
    intrinsic::RegExp,
    intrinsic::Json,
    intrinsic::MapSet,
    intrinsic::TypedArrays,
    intrinsic::Promise,
    intrinsic::Proxy,
    intrinsic::WeakRef,
);

/// Stack size for the interpreter: deep recursion becomes a catchable RangeError instead of
/// overflowing the host thread.
const MAX_STACK_BYTES: usize = 512 * 1024;
/// Longest log line kept; a script logging megabytes cannot flood the log store.
pub const MAX_LOG_LINE: usize = 64 * 1024;

/// Runs the bundle's entry in a fresh sandbox: its default export (a function, or Nango's
/// object form with `exec`) is called with the `nango` object, and `input` for actions. Returns
/// what it returned, as JSON.
pub async fn run(
    bundle: &Bundle,
    input: Option<Json>,
    info: RunInfo,
    host: Arc<dyn Host>,
    limits: Limits,
    cancel: CancellationToken,
) -> Result<Json, ScriptError> {
    run_with_budget(bundle, input, info, host, RunBudget::new(limits), cancel).await
}

/// [`run`] under a budget the host shares (it counts its buffers against the run's memory).
pub async fn run_with_budget(
    bundle: &Bundle,
    input: Option<Json>,
    info: RunInfo,
    host: Arc<dyn Host>,
    budget: Arc<RunBudget>,
    cancel: CancellationToken,
) -> Result<Json, ScriptError> {
    Sandbox::with_budget(bundle, budget, cancel)
        .await?
        .execute(input, info, host)
        .await
}

/// How long a cancelled run may wind down after `nango.abortSignal` aborted (and how long before
/// its deadline the signal aborts): at most 2 s, and a tenth of short deadlines.
pub fn abort_grace(timeout: Duration) -> Duration {
    (timeout / 10).min(Duration::from_secs(2))
}

/// What `nango.abortSignal` watches: the run's cancellation and its deadline less the grace.
#[derive(Clone)]
struct Abort {
    cancel: CancellationToken,
    soft_deadline: Instant,
}

impl Abort {
    /// Why the run is aborted, if it is: `cancelled` or `deadline`.
    fn state(&self) -> Option<&'static str> {
        if self.cancel.is_cancelled() {
            Some("cancelled")
        } else if Instant::now() >= self.soft_deadline {
            Some("deadline")
        } else {
            None
        }
    }

    async fn until(&self) -> &'static str {
        tokio::select! {
            _ = self.cancel.cancelled() => "cancelled",
            _ = tokio::time::sleep_until(self.soft_deadline.into()) => "deadline",
        }
    }
}

/// One fresh QuickJS runtime and context, ready to run one bundle once. [`run`] creates and
/// drops one per call; holding one after [`Sandbox::execute`] shows what a live sandbox costs.
pub struct Sandbox {
    context: AsyncContext,
    bundle: Bundle,
    limits: Limits,
    deadline: Instant,
    cancel: CancellationToken,
    budget: Arc<RunBudget>,
    grace: Duration,
}

impl Sandbox {
    /// A runtime with the limits set and a context whose modules come from `bundle` only. The
    /// deadline starts now.
    pub async fn new(
        bundle: &Bundle,
        limits: Limits,
        cancel: CancellationToken,
    ) -> Result<Self, ScriptError> {
        Self::with_budget(bundle, RunBudget::new(limits), cancel).await
    }

    /// [`Sandbox::new`] under `budget`'s limits, its heap counted in the budget's memory.
    pub async fn with_budget(
        bundle: &Bundle,
        budget: Arc<RunBudget>,
        cancel: CancellationToken,
    ) -> Result<Self, ScriptError> {
        let limits = *budget.limits();
        let invalid =
            |e: rquickjs::Error| ScriptError::new(ScriptErrorKind::InvalidScript, e.to_string());
        let deadline = Instant::now() + limits.timeout;
        let allocator = memory::LimitedAllocator::new(budget.memory().clone());
        let runtime = AsyncRuntime::new_with_alloc(allocator).map_err(invalid)?;
        runtime.set_max_stack_size(MAX_STACK_BYTES).await;
        let interrupt = cancel.clone();
        let grace = abort_grace(limits.timeout);
        // When the interrupt handler first saw the cancellation: JavaScript stops a grace later.
        let cancel_seen = std::sync::OnceLock::new();
        runtime
            .set_interrupt_handler(Some(Box::new(move || {
                let now = Instant::now();
                now >= deadline
                    || (interrupt.is_cancelled() && now >= *cancel_seen.get_or_init(|| now + grace))
            })))
            .await;
        let modules = BundleModules(Arc::new(bundle.modules.clone()));
        runtime.set_loader(modules.clone(), modules).await;
        let context = AsyncContext::custom::<Intrinsics>(&runtime)
            .await
            .map_err(invalid)?;
        Ok(Self {
            context,
            bundle: bundle.clone(),
            limits,
            deadline,
            cancel,
            budget,
            grace,
        })
    }

    fn abort(&self) -> Abort {
        Abort {
            cancel: self.cancel.clone(),
            soft_deadline: self.deadline - self.grace,
        }
    }

    /// Frees what the run left unreachable, as a runtime does between allocations anyway; what
    /// a held sandbox then occupies is what it costs to keep.
    pub async fn collect_garbage(&self) {
        self.context.runtime().run_gc().await;
    }

    /// Runs the entry (see [`run`]).
    pub async fn execute(
        &self,
        input: Option<Json>,
        info: RunInfo,
        host: Arc<dyn Host>,
    ) -> Result<Json, ScriptError> {
        let entry = self.bundle.entry.clone();
        let info = serde_json::to_value(&info).expect("run info serializes");
        let budget = self.budget.clone();
        let abort = self.abort();
        self.guard(self.context.async_with(async move |ctx| {
            execute(&ctx, &entry, input, &info, host, budget, abort)
                .await
                .map_err(|e| to_script_error(e))
        }))
        .await
    }

    /// Runs `execution` (something done in this sandbox's context) under the deadline and the
    /// cancellation, and names why it stopped when it was stopped.
    async fn guard<T>(
        &self,
        execution: impl std::future::Future<Output = Result<T, ScriptError>>,
    ) -> Result<T, ScriptError> {
        let result = tokio::select! {
            result = tokio::time::timeout(self.limits.timeout, execution) => match result {
                Ok(result) => result,
                Err(_) => Err(ScriptError::new(ScriptErrorKind::Timeout, "")),
            },
            _ = async {
                self.cancel.cancelled().await;
                tokio::time::sleep(self.grace).await;
            } => Err(ScriptError::new(ScriptErrorKind::Cancelled, "")),
        };
        // Whatever the script did after an allocation was refused, the run failed.
        if self.budget.memory().exceeded() {
            return Err(out_of_memory(self.limits));
        }
        result.map_err(|e| {
            let mut e = classify(e, &self.cancel, self.deadline, self.limits);
            e.stack = e.stack.map(|s| stack::remap_stack(&self.bundle, &s));
            e
        })
    }
}

/// Names why a run stopped when it was stopped from outside (deadline, cancellation).
fn classify(
    e: ScriptError,
    cancel: &CancellationToken,
    deadline: Instant,
    limits: Limits,
) -> ScriptError {
    if cancel.is_cancelled() {
        ScriptError {
            kind: ScriptErrorKind::Cancelled,
            message: "the run was cancelled".into(),
            ..e
        }
    } else if e.kind == ScriptErrorKind::Timeout || Instant::now() >= deadline {
        ScriptError {
            kind: ScriptErrorKind::Timeout,
            message: format!(
                "script exceeded its deadline of {} s",
                limits.timeout.as_secs_f64()
            ),
            ..e
        }
    } else {
        e
    }
}

fn out_of_memory(limits: Limits) -> ScriptError {
    ScriptError::new(
        ScriptErrorKind::OutOfMemory,
        format!(
            "script exceeded its memory limit of {} MiB",
            limits.memory_bytes / (1024 * 1024)
        ),
    )
}

enum RunError<'js> {
    Caught(CaughtError<'js>),
    Invalid(ScriptErrorKind, String),
}

impl<'js> From<CaughtError<'js>> for RunError<'js> {
    fn from(e: CaughtError<'js>) -> Self {
        Self::Caught(e)
    }
}

fn answer(result: Result<Json, HostError>) -> String {
    match result {
        Ok(value) => serde_json::json!({ "ok": value }).to_string(),
        Err(e) => serde_json::json!({ "error": { "message": e.message, "response": e.response } })
            .to_string(),
    }
}

fn level(name: &str) -> Level {
    match name {
        "debug" => Level::Debug,
        "warn" => Level::Warn,
        "error" => Level::Error,
        _ => Level::Info,
    }
}

fn truncate_line(message: &str) -> &str {
    if message.len() <= MAX_LOG_LINE {
        return message;
    }
    let mut end = MAX_LOG_LINE;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    &message[..end]
}

/// An answer's text for the script, which is about to get its own copy in its heap: an answer
/// whose copy would not fit in the run's memory becomes that error instead.
fn answer_within(budget: &RunBudget, result: Result<Json, HostError>) -> String {
    let text = answer(result);
    match budget.reserve("the answer", text.len()) {
        Ok(_) => text,
        Err(e) => answer(Err(e)),
    }
}

/// Puts the host functions on `globalThis.__lasso`, where the SDK prelude picks them up. Every
/// call takes one of the run's call slots, and what crosses the boundary on the host side is
/// held against the run's memory, so a run's host work is bounded by its budget.
fn install_host<'js>(
    ctx: &Ctx<'js>,
    host: Arc<dyn Host>,
    budget: Arc<RunBudget>,
    abort: Abort,
) -> rquickjs::Result<()> {
    let lasso = Object::new(ctx.clone())?;
    let watched = abort.clone();
    lasso.set(
        "abortState",
        Function::new(ctx.clone(), move || watched.state())?,
    )?;
    lasso.set(
        "untilAbort",
        Function::new(
            ctx.clone(),
            Async(move || {
                let abort = abort.clone();
                async move { abort.until().await }
            }),
        )?,
    )?;
    let (h, b) = (host.clone(), budget.clone());
    lasso.set(
        "call",
        Function::new(
            ctx.clone(),
            Async(move |op: String, args: String| {
                let (host, budget) = (h.clone(), b.clone());
                // Taken now, when the script calls: the slot is held until the answer is in.
                let started = budget.start_call().and_then(|slot| {
                    Ok((slot, budget.reserve("the call's arguments", args.len())?))
                });
                async move {
                    let result = match started {
                        Ok((_slot, held)) => {
                            let args = serde_json::from_str(&args).unwrap_or(Json::Null);
                            drop(held);
                            host.call(&op, args).await
                        }
                        Err(e) => Err(e),
                    };
                    answer_within(&budget, result)
                }
            }),
        )?,
    )?;
    let (h, b) = (host.clone(), budget.clone());
    lasso.set(
        "batch",
        Function::new(
            ctx.clone(),
            Async(move |op: String, model: String, records: Value<'js>| {
                let (host, budget) = (h.clone(), b.clone());
                // Converted before the await: the records are read now, errors carry their path;
                // the host's copy is held against the run's memory until the batch is written.
                let started = budget.start_call().and_then(|slot| {
                    let records = batch_records(&records).map_err(HostError::new)?;
                    let size = records.iter().map(budget::json_size).sum();
                    let held = budget.reserve("the batch's records", size)?;
                    Ok((slot, held, records))
                });
                async move {
                    let op = match op.as_str() {
                        "save" => BatchOp::Save,
                        "update" => BatchOp::Update,
                        _ => BatchOp::Delete,
                    };
                    answer_within(
                        &budget,
                        match started {
                            Ok((_slot, _held, records)) => {
                                host.batch(op, &model, records).await.map(|()| Json::Null)
                            }
                            Err(e) => Err(e),
                        },
                    )
                }
            }),
        )?,
    )?;
    let h = host.clone();
    lasso.set(
        "log",
        Function::new(
            ctx.clone(),
            move |ctx: Ctx<'js>, level_name: String, message: String| {
                let line = truncate_line(&message);
                if let Err(e) = budget.log(line.len()) {
                    return Err(rquickjs::Exception::throw_message(&ctx, &e));
                }
                h.log(level(&level_name), line);
                Ok(())
            },
        )?,
    )?;
    lasso.set(
        "sleep",
        Function::new(
            ctx.clone(),
            Async(move |ms: f64| async move {
                let ms = if ms.is_finite() && ms > 0.0 { ms } else { 0.0 };
                if ms == 0.0 {
                    tokio::task::yield_now().await;
                } else {
                    tokio::time::sleep(Duration::from_secs_f64(ms / 1000.0)).await;
                }
            }),
        )?,
    )?;
    node::install(ctx, &lasso)?;
    ctx.globals().set("__lasso", lasso)
}

fn batch_records<'js>(records: &Value<'js>) -> Result<Vec<Json>, String> {
    let Some(array) = records.as_array() else {
        return Err("records must be an array".into());
    };
    let mut converter = convert::ToJson::new(records.ctx());
    array
        .iter::<Value>()
        .enumerate()
        .map(|(i, item)| {
            let item = item.map_err(|e| format!("records[{i}]: {e}"))?;
            converter.convert(&item, || format!("records[{i}]"))
        })
        .collect()
}

async fn settle<'js>(ctx: &Ctx<'js>, value: Value<'js>) -> Result<Value<'js>, RunError<'js>> {
    match value.as_promise() {
        Some(p) => Ok(p.clone().into_future::<Value>().await.catch(ctx)?),
        None => Ok(value),
    }
}

async fn import<'js>(ctx: &Ctx<'js>, name: &str) -> Result<Object<'js>, RunError<'js>> {
    let promise: Promise = Module::import(ctx, name).catch(ctx)?;
    Ok(promise.into_future::<Object>().await.catch(ctx)?)
}

/// Sets a fresh context up for user code: the host functions, the Node globals, the SDK.
async fn prepare<'js>(
    ctx: &Ctx<'js>,
    host: Arc<dyn Host>,
    budget: Arc<RunBudget>,
    abort: Abort,
) -> Result<(), RunError<'js>> {
    install_host(ctx, host, budget, abort).catch(ctx)?;
    let (_, globals) = bytecode::declare_static(ctx, node::GLOBALS_NAME, node::GLOBALS)
        .and_then(|m| m.eval())
        .catch(ctx)?;
    globals.into_future::<()>().await.catch(ctx)?;
    let (_, prelude) = bytecode::declare(ctx, PRELUDE_NAME, SDK_PRELUDE, bytecode::Debug::Strip)
        .and_then(|m| m.eval())
        .catch(ctx)?;
    prelude.into_future::<()>().await.catch(ctx)?;
    Ok(())
}

async fn execute<'js>(
    ctx: &Ctx<'js>,
    entry: &str,
    input: Option<Json>,
    info: &Json,
    host: Arc<dyn Host>,
    budget: Arc<RunBudget>,
    abort: Abort,
) -> Result<Json, RunError<'js>> {
    prepare(ctx, host, budget, abort).await?;
    let namespace = import(ctx, entry).await?;
    let sdk = import(ctx, SDK_MODULE_NAME).await?;
    let exported: Value = namespace.get("default").catch(ctx)?;
    let function = match (exported.as_function(), exported.as_object()) {
        (Some(f), _) => f.clone(),
        (None, Some(definition)) => definition
            .get::<_, Option<Function>>("exec")
            .catch(ctx)?
            .ok_or_else(|| {
                RunError::Invalid(
                    ScriptErrorKind::InvalidScript,
                    "the default export is an object without an `exec` function".into(),
                )
            })?,
        (None, None) => {
            return Err(RunError::Invalid(
                ScriptErrorKind::InvalidScript,
                "the script has no default export function (or createSync/createAction object)"
                    .into(),
            ));
        }
    };
    let globals = ctx.globals();
    let make: Function = globals.get("__lassoMakeNango").catch(ctx)?;
    globals.remove("__lassoMakeNango").catch(ctx)?;
    let action_error: Value = sdk.get("ActionError").catch(ctx)?;
    let info = convert::from_json(ctx, info).catch(ctx)?;
    let nango: Value = make.call((info, action_error)).catch(ctx)?;
    let returned: Value = match input {
        Some(input) => {
            let input = convert::from_json(ctx, &input).catch(ctx)?;
            function.call((nango, input)).catch(ctx)?
        }
        None => function.call((nango,)).catch(ctx)?,
    };
    let returned = settle(ctx, returned).await?;
    convert::to_json(&returned, "the returned value")
        .map_err(|e| RunError::Invalid(ScriptErrorKind::InvalidOutput, e))
}

fn to_script_error(e: RunError<'_>) -> ScriptError {
    match e {
        RunError::Invalid(kind, message) => ScriptError::new(kind, message),
        RunError::Caught(CaughtError::Exception(ex)) => {
            let message = ex.message().unwrap_or_else(|| "exception".into());
            let name = ex
                .get::<_, Option<String>>("name")
                .ok()
                .flatten()
                .unwrap_or_else(|| "Error".into());
            let stack = ex.stack().filter(|s| !s.is_empty());
            if name == "ActionError" {
                let payload = ex
                    .get::<_, Value>("payload")
                    .ok()
                    .and_then(|p| convert::to_json(&p, "payload").ok());
                return ScriptError {
                    kind: ScriptErrorKind::ActionError,
                    message,
                    stack,
                    payload,
                };
            }
            ScriptError {
                kind: ScriptErrorKind::Exception,
                message: format!("{name}: {message}"),
                stack,
                payload: None,
            }
        }
        RunError::Caught(CaughtError::Value(v)) => {
            let message = if v.is_null() {
                "null".to_string()
            } else if let Some(s) = v.as_string() {
                s.to_string().unwrap_or_default()
            } else {
                convert::to_json(&v, "the thrown value")
                    .map(|j| j.to_string())
                    .unwrap_or_else(|_| format!("{:?}", v.type_of()))
            };
            ScriptError::new(ScriptErrorKind::Exception, message)
        }
        RunError::Caught(CaughtError::Error(e)) => {
            let kind = if matches!(e, rquickjs::Error::Allocation) {
                ScriptErrorKind::OutOfMemory
            } else {
                ScriptErrorKind::InvalidScript
            };
            ScriptError::new(kind, e.to_string())
        }
    }
}

/// A response's headers as the SDK hands them to scripts: name → value, skipping values that
/// are not text.
pub fn response_headers(headers: &reqwest::header::HeaderMap) -> serde_json::Map<String, Json> {
    headers
        .iter()
        .filter_map(|(k, v)| {
            Some((
                k.as_str().to_string(),
                Json::String(v.to_str().ok()?.to_string()),
            ))
        })
        .collect()
}

/// A bundle of one module, for a bare script (`export default async function (nango) {...}`).
pub fn single_module(source: &str) -> Bundle {
    Bundle {
        format: lasso_core::scripts::BUNDLE_FORMAT,
        entry: "script.js".into(),
        modules: BTreeMap::from([("script.js".to_string(), source.to_string())]),
        source_maps: BTreeMap::new(),
    }
}

#[cfg(test)]
mod compat_tests;
#[cfg(test)]
mod sdk_tests;
#[cfg(test)]
mod tests;
