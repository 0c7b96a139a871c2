//! Compile-time evaluation: runs a bundle's top level in a fresh sandbox (same limits and
//! isolation as a run) and reads the configuration its default export carries, with zod
//! schemas converted to JSON Schema by zod itself (`describe.js`). Nothing reaches a host: the
//! `nango` object does not exist before `exec` runs.

use std::sync::Arc;

use async_trait::async_trait;
use rquickjs::{CatchResultExt, Function, Object, Value};
use serde_json::Value as Json;
use tokio_util::sync::CancellationToken;

use super::{
    BatchOp, Host, HostError, Limits, RunBudget, RunError, Sandbox, ScriptError, ScriptErrorKind,
    bytecode, convert, import, prepare, settle, to_script_error,
};
use lasso_core::logs::Level;
use lasso_core::scripts::Bundle;

const DESCRIBE: &str = include_str!("describe.js");
const DESCRIBE_NAME: &str = "lasso:describe";

/// Top-level code that calls out has nothing to call at compile time.
struct CompileTime;

#[async_trait]
impl Host for CompileTime {
    async fn call(&self, op: &str, _args: Json) -> Result<Json, HostError> {
        Err(HostError::new(format!(
            "`{op}` cannot run while the configuration is read at compile time"
        )))
    }
    async fn batch(&self, _: BatchOp, _: &str, _: Vec<Json>) -> Result<(), HostError> {
        Err(HostError::new(
            "records cannot be saved while the configuration is read at compile time",
        ))
    }
    fn log(&self, _: Level, _: &str) {}
}

/// Evaluates `bundle` and describes its default export: `{"kind": null}` for a bare function,
/// else `{"kind": "sync" | "action" | "on-event", ...}` with the fields and a `problems` list
/// (see `describe.js`). A top level that throws, loops or allocates past the limits is an error.
pub async fn describe(
    bundle: &Bundle,
    integration: &str,
    name: &str,
    limits: Limits,
) -> Result<Json, ScriptError> {
    let cancel = CancellationToken::new();
    let budget = RunBudget::new(limits);
    let sandbox = Sandbox::with_budget(bundle, budget.clone(), cancel).await?;
    let entry = bundle.entry.clone();
    let (integration, name) = (integration.to_string(), name.to_string());
    let abort = sandbox.abort();
    sandbox
        .guard(sandbox.context.async_with(async move |ctx| {
            let run = async {
                prepare(&ctx, Arc::new(CompileTime), budget, abort).await?;
                let namespace = import(&ctx, &entry).await?;
                let exported: Value = namespace.get("default").catch(&ctx)?;
                let (module, promise) =
                    // With its debug info: `import()` needs the module's file name.
                    bytecode::declare(&ctx, DESCRIBE_NAME, DESCRIBE, bytecode::Debug::Keep)
                        .and_then(|m| m.eval())
                        .catch(&ctx)?;
                promise.into_future::<()>().await.catch(&ctx)?;
                let describe: Function = module
                    .namespace()
                    .and_then(|ns: Object| ns.get("describe"))
                    .catch(&ctx)?;
                let described = describe.call((exported, integration, name)).catch(&ctx)?;
                let described = settle(&ctx, described).await?;
                convert::to_json(&described, "the configuration")
                    .map_err(|e| RunError::Invalid(ScriptErrorKind::InvalidOutput, e))
            };
            run.await.map_err(to_script_error)
        }))
        .await
}
