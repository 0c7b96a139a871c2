//! The JavaScript sandbox (QuickJS through rquickjs). Every run gets a fresh runtime and
//! context with a memory limit and a deadline; nothing of the host is reachable but what is
//! put on the `nango` object.

use std::time::{Duration, Instant};

use rquickjs::{
    AsyncContext, AsyncRuntime, CatchResultExt, CaughtError, Ctx, Function, Module, Object, Value,
};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub memory_bytes: usize,
    pub timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory_bytes: 64 * 1024 * 1024,
            timeout: Duration::from_secs(300),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScriptErrorKind {
    /// The script threw (or its promise rejected).
    Exception,
    Timeout,
    OutOfMemory,
    /// The source did not compile or has no default export function.
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
}

impl ScriptError {
    fn new(kind: ScriptErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            stack: None,
        }
    }
}

/// Stack size for the interpreter: deep recursion becomes a catchable RangeError instead of
/// overflowing the host thread.
const MAX_STACK_BYTES: usize = 512 * 1024;

/// Runs `source`, an ES module whose default export is a (possibly async) function, calling it
/// with a `nango` object and `input`. Returns what it returned, as JSON.
pub async fn run(
    source: &str,
    input: &serde_json::Value,
    limits: Limits,
) -> Result<serde_json::Value, ScriptError> {
    let internal =
        |e: rquickjs::Error| ScriptError::new(ScriptErrorKind::InvalidScript, e.to_string());
    let deadline = Instant::now() + limits.timeout;
    let runtime = AsyncRuntime::new().map_err(internal)?;
    runtime.set_memory_limit(limits.memory_bytes).await;
    runtime.set_max_stack_size(MAX_STACK_BYTES).await;
    runtime
        .set_interrupt_handler(Some(Box::new(move || Instant::now() >= deadline)))
        .await;
    let context = AsyncContext::full(&runtime).await.map_err(internal)?;
    let input_json = input.to_string();
    let source = source.to_string();

    let run = context.async_with(async move |ctx| {
        let outcome = call_default_export(&ctx, &source, &input_json).await;
        outcome.map_err(|e| to_script_error(&ctx, e))
    });

    // The interrupt handler stops pure-JS loops; the outer timeout stops a script that waits
    // forever on something that never settles.
    let result = match tokio::time::timeout(limits.timeout, run).await {
        Ok(result) => result,
        Err(_) => Err(timeout_error(limits.timeout)),
    };
    match result {
        Err(e) if Instant::now() >= deadline => Err(ScriptError {
            kind: ScriptErrorKind::Timeout,
            message: timeout_error(limits.timeout).message,
            stack: e.stack,
        }),
        Err(e)
            if e.kind == ScriptErrorKind::Exception
                && is_out_of_memory(&runtime, &e, limits).await =>
        {
            Err(ScriptError::new(
                ScriptErrorKind::OutOfMemory,
                format!(
                    "script exceeded its memory limit of {} MiB",
                    limits.memory_bytes / (1024 * 1024)
                ),
            ))
        }
        other => other,
    }
}

fn timeout_error(timeout: Duration) -> ScriptError {
    ScriptError::new(
        ScriptErrorKind::Timeout,
        format!(
            "script exceeded its deadline of {} s",
            timeout.as_secs_f64()
        ),
    )
}

async fn is_out_of_memory(runtime: &AsyncRuntime, e: &ScriptError, limits: Limits) -> bool {
    if e.message.contains("out of memory") {
        return true;
    }
    // QuickJS may fail to allocate the error object itself; then the thrown value is null.
    let usage = runtime.memory_usage().await;
    e.message == "null" && usage.malloc_size as usize >= limits.memory_bytes / 2
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

async fn call_default_export<'js>(
    ctx: &Ctx<'js>,
    source: &str,
    input_json: &str,
) -> Result<serde_json::Value, RunError<'js>> {
    let module = Module::declare(ctx.clone(), "script.js", source).catch(ctx)?;
    let (module, loaded) = module.eval().catch(ctx)?;
    loaded.into_future::<()>().await.catch(ctx)?;
    let entry: Value = module.get("default").catch(ctx)?;
    let Some(entry) = entry.as_function().cloned() else {
        return Err(RunError::Invalid(
            ScriptErrorKind::InvalidScript,
            "the script has no default export function".into(),
        ));
    };
    let entry: Function = entry;
    let nango = Object::new(ctx.clone()).catch(ctx)?;
    let input = ctx.json_parse(input_json).catch(ctx)?;
    let returned: Value = entry.call((nango, input)).catch(ctx)?;
    let returned: Value = match returned.as_promise() {
        Some(p) => p.clone().into_future::<Value>().await.catch(ctx)?,
        None => returned,
    };
    to_json(ctx, returned)
}

fn to_json<'js>(ctx: &Ctx<'js>, value: Value<'js>) -> Result<serde_json::Value, RunError<'js>> {
    if value.is_undefined() {
        return Ok(serde_json::Value::Null);
    }
    let text = ctx.json_stringify(value).catch(ctx)?;
    match text {
        None => Ok(serde_json::Value::Null),
        Some(s) => {
            let s = s.to_string().catch(ctx)?;
            serde_json::from_str(&s).map_err(|e| {
                RunError::Invalid(
                    ScriptErrorKind::InvalidOutput,
                    format!("the returned value is not JSON: {e}"),
                )
            })
        }
    }
}

fn to_script_error<'js>(_ctx: &Ctx<'js>, e: RunError<'js>) -> ScriptError {
    match e {
        RunError::Invalid(kind, message) => ScriptError::new(kind, message),
        RunError::Caught(CaughtError::Exception(ex)) => {
            let message = ex.message().unwrap_or_else(|| "exception".into());
            let name = ex
                .get::<_, Option<String>>("name")
                .ok()
                .flatten()
                .unwrap_or_else(|| "Error".into());
            ScriptError {
                kind: ScriptErrorKind::Exception,
                message: format!("{name}: {message}"),
                stack: ex.stack().filter(|s| !s.is_empty()),
            }
        }
        RunError::Caught(CaughtError::Value(v)) => {
            let message = if v.is_null() {
                "null".to_string()
            } else if let Some(s) = v.as_string() {
                s.to_string().unwrap_or_default()
            } else {
                v.ctx()
                    .json_stringify(v.clone())
                    .ok()
                    .flatten()
                    .and_then(|s| s.to_string().ok())
                    .unwrap_or_else(|| format!("{:?}", v.type_of()))
            };
            ScriptError::new(ScriptErrorKind::Exception, message)
        }
        RunError::Caught(CaughtError::Error(e)) => {
            let kind = if matches!(e, rquickjs::Error::Allocation) {
                ScriptErrorKind::OutOfMemory
            } else {
                ScriptErrorKind::Exception
            };
            ScriptError::new(kind, e.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn limits() -> Limits {
        Limits {
            memory_bytes: 16 * 1024 * 1024,
            timeout: Duration::from_secs(2),
        }
    }

    #[tokio::test]
    async fn returns_the_default_export_result() {
        let out = run(
            "export default async function (nango, input) { return { doubled: input.n * 2 }; }",
            &json!({"n": 21}),
            limits(),
        )
        .await
        .unwrap();
        assert_eq!(out, json!({"doubled": 42}));
    }

    #[tokio::test]
    async fn a_throw_is_an_exception_with_message_and_stack() {
        let e = run(
            "export default async function () {\n  throw new TypeError('boom');\n}",
            &json!(null),
            limits(),
        )
        .await
        .unwrap_err();
        assert_eq!(e.kind, ScriptErrorKind::Exception);
        assert_eq!(e.message, "TypeError: boom");
        assert!(e.stack.unwrap().contains("script.js:2"));
    }

    #[tokio::test]
    async fn syntax_errors_and_missing_exports_are_reported() {
        let e = run("export default function (", &json!(null), limits())
            .await
            .unwrap_err();
        assert!(e.message.contains("SyntaxError"), "{e:?}");
        let e = run("export const x = 1;", &json!(null), limits())
            .await
            .unwrap_err();
        assert_eq!(e.kind, ScriptErrorKind::InvalidScript);
    }

    #[tokio::test]
    async fn infinite_loops_hit_the_deadline() {
        let e = run(
            "export default function () { while (true) {} }",
            &json!(null),
            Limits {
                timeout: Duration::from_millis(200),
                ..limits()
            },
        )
        .await
        .unwrap_err();
        assert_eq!(e.kind, ScriptErrorKind::Timeout);
    }

    #[tokio::test]
    async fn memory_bombs_hit_the_limit() {
        let e = run(
            "export default function () { const a = []; while (true) { a.push('x'.repeat(1024) + a.length); } }",
            &json!(null),
            limits(),
        )
        .await
        .unwrap_err();
        assert_eq!(e.kind, ScriptErrorKind::OutOfMemory, "{e:?}");
    }

    #[tokio::test]
    async fn unsettled_promises_hit_the_deadline() {
        let e = run(
            "export default function () { return new Promise(() => {}); }",
            &json!(null),
            Limits {
                timeout: Duration::from_millis(200),
                ..limits()
            },
        )
        .await
        .unwrap_err();
        assert_eq!(e.kind, ScriptErrorKind::Timeout);
    }
}
