//! `lasso dryrun`: runs a sync or action of a local project in the sandbox against a real
//! connection of a running Lasso, and reports what it would save or return. Provider calls go
//! through that Lasso's proxy (so credentials never leave it); nothing is written: records,
//! metadata and checkpoints the script saves are collected and printed instead. Reads (the
//! token, the integration, records) come from that Lasso's API; `uncontrolledFetch` is sent
//! from this machine under the production outbound policy; locks are this run's own;
//! `triggerAction`, `triggerSync` and `startSync` call that Lasso's API for real, as Nango's
//! dry runs do.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::{Context as _, bail};
use async_trait::async_trait;
use lasso_sandbox::{self as sandbox, BatchOp, Host, HostError, Limits, RunInfo, ScriptError};
use lasso_services::logs::Level;
use lasso_services::records;
use lasso_services::scripts::{Bundle, CompiledFunction, FunctionType};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

pub struct Options {
    pub dir: PathBuf,
    pub function: String,
    pub connection_id: String,
    /// The integration, when the project has the function under several.
    pub integration: Option<String>,
    pub input: Option<Value>,
    pub host: String,
    pub secret_key: String,
    pub limits: Limits,
}

/// What the script did, collected instead of written.
#[derive(Debug, Default)]
pub struct Report {
    pub logs: Vec<(Level, String)>,
    /// Per model: the records each batch operation would have written.
    pub saved: BTreeMap<String, Vec<Value>>,
    pub updated: BTreeMap<String, Vec<Value>>,
    pub deleted: BTreeMap<String, Vec<Value>>,
    pub metadata: Vec<(String, Value)>,
    pub checkpoint: Option<Value>,
    pub output: Option<Result<Value, ScriptError>>,
}

struct DryRunHost {
    http: reqwest::Client,
    /// `uncontrolledFetch`'s client, on the production outbound policy.
    fetch: lasso_services::outbound::Client,
    /// The locks this run holds.
    locks: Mutex<BTreeSet<String>>,
    base: String,
    secret_key: String,
    integration: String,
    connection_id: String,
    outputs: Vec<String>,
    report: Arc<Mutex<Report>>,
}

fn host_error(e: impl std::fmt::Display) -> HostError {
    HostError::new(e.to_string())
}

impl DryRunHost {
    async fn get_json(&self, path: &str) -> Result<Value, HostError> {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.secret_key)
            .send()
            .await
            .map_err(host_error)?;
        let status = response.status();
        let body: Value = response.json().await.map_err(host_error)?;
        if !status.is_success() {
            return Err(HostError::new(format!(
                "{path}: {status}: {}",
                body["error"]["message"]
            )));
        }
        Ok(body)
    }

    /// A call of that Lasso's API for this connection (`Connection-Id`, `Provider-Config-Key`).
    async fn api(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, HostError> {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.secret_key)
            .header("Connection-Id", &self.connection_id)
            .header("Provider-Config-Key", &self.integration);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.map_err(host_error)?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(host_error)?;
        let data: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if !status.is_success() {
            return Err(HostError {
                message: format!("{path}: {status}: {}", data["error"]["message"]),
                response: Some(json!({"status": status.as_u16(), "headers": {}, "data": data})),
            });
        }
        Ok(data)
    }

    async fn records(&self, model: &str, query: &str) -> Result<Value, HostError> {
        self.api(
            reqwest::Method::GET,
            &format!("/records?model={}{query}", urlencode(model)),
            None,
        )
        .await
    }

    async fn connection(&self) -> Result<Value, HostError> {
        self.get_json(&format!(
            "/connections/{}?provider_config_key={}",
            urlencode(&self.connection_id),
            urlencode(&self.integration)
        ))
        .await
    }

    /// A proxy call through the running Lasso, shaped as the sandbox's proxy answers.
    async fn proxy(&self, args: &Value) -> Result<Value, HostError> {
        let endpoint = args["endpoint"]
            .as_str()
            .ok_or_else(|| HostError::new("proxy: `endpoint` is required"))?;
        let method = args["method"]
            .as_str()
            .unwrap_or("GET")
            .to_ascii_uppercase();
        // An absolute URL (a pagination link) goes to its origin, which the proxy allows when it
        // is the provider's.
        let (override_base, path) = match url::Url::parse(endpoint) {
            Ok(u) if u.has_host() => {
                let origin = u.origin().ascii_serialization();
                let rest = &endpoint[origin.len()..];
                (Some(origin), rest.to_string())
            }
            _ => (None, endpoint.to_string()),
        };
        let path = if path.starts_with('/') {
            path
        } else {
            format!("/{path}")
        };
        let mut request = self
            .http
            .request(
                reqwest::Method::from_bytes(method.as_bytes()).map_err(host_error)?,
                format!("{}/proxy{path}", self.base),
            )
            .bearer_auth(&self.secret_key)
            .header("Connection-Id", &self.connection_id)
            .header("Provider-Config-Key", &self.integration);
        if let Some(Value::Object(params)) = args.get("params") {
            let pairs: Vec<(String, String)> = params
                .iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| {
                    (
                        k.clone(),
                        v.as_str().map_or_else(|| v.to_string(), str::to_string),
                    )
                })
                .collect();
            request = request.query(&pairs);
        }
        if let Some(Value::Object(headers)) = args.get("headers") {
            for (name, value) in headers {
                let value = value
                    .as_str()
                    .map_or_else(|| value.to_string(), str::to_string);
                request = request.header(format!("Nango-Proxy-{name}"), value);
            }
        }
        if let Some(base) =
            override_base.or_else(|| args["baseUrlOverride"].as_str().map(str::to_string))
        {
            request = request.header("Base-Url-Override", base);
        }
        if let Some(retries) = args["retries"].as_u64() {
            request = request.header("Retries", retries.to_string());
        }
        request = match args.get("data") {
            None | Some(Value::Null) => request,
            Some(Value::String(s)) => request.body(s.clone()),
            Some(other) => request.json(other),
        };
        let response = request.send().await.map_err(host_error)?;
        let status = response.status().as_u16();
        let headers = sandbox::response_headers(response.headers());
        let bytes = response.bytes().await.map_err(host_error)?;
        let data = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        let answer = json!({"status": status, "headers": headers, "data": data});
        self.report
            .lock()
            .expect("report")
            .logs
            .push((Level::Info, format!("{method} {endpoint} -> {status}")));
        if status >= 400 {
            return Err(HostError {
                message: format!("the provider answered {status} to {method} {endpoint}"),
                response: Some(answer),
            });
        }
        Ok(answer)
    }
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[async_trait]
impl Host for DryRunHost {
    async fn call(&self, op: &str, args: Value) -> Result<Value, HostError> {
        match op {
            "proxy" => self.proxy(&args).await,
            "getConnection" => self.connection().await,
            "getMetadata" => Ok(self.connection().await?["metadata"].clone()),
            "setMetadata" | "updateMetadata" => {
                self.report
                    .lock()
                    .expect("report")
                    .metadata
                    .push((op.to_string(), args));
                Ok(Value::Null)
            }
            "getCheckpoint" => Ok(Value::Null),
            "saveCheckpoint" => {
                self.report.lock().expect("report").checkpoint = Some(args);
                Ok(Value::Null)
            }
            "clearCheckpoint" => {
                self.report.lock().expect("report").checkpoint = None;
                Ok(Value::Null)
            }
            // A dry run saves nothing, so it has nothing to detect deletions in.
            "trackDeletesStart" => Ok(Value::Null),
            "trackDeletesEnd" => Ok(json!({"deletedKeys": []})),
            "getEnvironmentVariables" => self.get_json("/environment-variables").await,
            "getToken" => {
                let mut credentials = self.connection().await?["credentials"].take();
                if credentials["type"] == "OAUTH2" {
                    return Ok(credentials["access_token"].take());
                }
                if let Value::Object(fields) = &mut credentials {
                    fields.remove("client_secret");
                    fields.remove("refresh_token");
                }
                Ok(credentials)
            }
            "getIntegration" => {
                let include: Vec<&str> = args["include"]
                    .as_array()
                    .map(|a| a.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                let mut data = self
                    .get_json(&format!(
                        "/integrations/{}?include={}",
                        urlencode(&self.integration),
                        urlencode(&include.join(","))
                    ))
                    .await?["data"]
                    .take();
                // Scripts never receive the integration's secrets.
                if let Value::Object(credentials) = &mut data["credentials"] {
                    credentials.remove("client_secret");
                    credentials.remove("webhook_secret");
                }
                Ok(data)
            }
            "getRecordsByIds" => {
                let model = args["model"].as_str().unwrap_or_default();
                let ids: String = args["ids"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .map(|id| format!("&ids={}", urlencode(id)))
                    .collect();
                let mut found = Vec::new();
                let mut cursor = String::new();
                loop {
                    let page = self
                        .records(model, &format!("&limit=100{ids}{cursor}"))
                        .await?;
                    found.extend(page["records"].as_array().cloned().unwrap_or_default());
                    match page["next_cursor"].as_str() {
                        Some(next) => cursor = format!("&cursor={}", urlencode(next)),
                        None => return Ok(Value::Array(found)),
                    }
                }
            }
            "listRecords" => {
                let model = args["model"].as_str().unwrap_or_default();
                let cursor = args["cursor"]
                    .as_str()
                    .map(|c| format!("&cursor={}", urlencode(c)))
                    .unwrap_or_default();
                self.records(model, &format!("&limit=100{cursor}")).await
            }
            // A dry run writes nothing, so nothing to merge with.
            "setMergingStrategy" => Ok(Value::Null),
            "uncontrolledFetch" => {
                // The dry run's own sandbox keeps its budget to itself; the answer is read against
                // a budget of the default limits.
                let budget = sandbox::budget::RunBudget::new(sandbox::Limits::default());
                let fetched = sandbox::fetch::send(&self.fetch, &args, &budget).await?;
                if let Some((_, line)) = fetched.log {
                    self.report
                        .lock()
                        .expect("report")
                        .logs
                        .push((Level::Info, format!("{line} (uncontrolledFetch)")));
                }
                Ok(fetched.answer)
            }
            "tryAcquireLock" => {
                let key = args["key"].as_str().unwrap_or_default().to_string();
                self.locks.lock().expect("locks").insert(key);
                Ok(Value::Bool(true))
            }
            "releaseLock" => {
                let key = args["key"].as_str().unwrap_or_default();
                Ok(Value::Bool(self.locks.lock().expect("locks").remove(key)))
            }
            "releaseAllLocks" => {
                self.locks.lock().expect("locks").clear();
                Ok(Value::Bool(true))
            }
            "triggerAction" => {
                let body = json!({"action_name": args["action"], "input": args["input"]});
                let mut request = self
                    .http
                    .post(format!("{}/action/trigger", self.base))
                    .bearer_auth(&self.secret_key)
                    .header(
                        "Connection-Id",
                        args["connectionId"].as_str().unwrap_or_default(),
                    )
                    .header(
                        "Provider-Config-Key",
                        args["providerConfigKey"].as_str().unwrap_or_default(),
                    );
                request = request.json(&body);
                let response = request.send().await.map_err(host_error)?;
                let status = response.status();
                let data: Value = response.json().await.unwrap_or(Value::Null);
                if !status.is_success() {
                    return Err(HostError {
                        message: format!(
                            "triggerAction(`{}`): {}",
                            args["action"].as_str().unwrap_or_default(),
                            data["error"]["message"]
                        ),
                        response: Some(
                            json!({"status": status.as_u16(), "headers": {}, "data": data}),
                        ),
                    });
                }
                Ok(data)
            }
            "triggerSync" => {
                let mut body = json!({
                    "provider_config_key": args["providerConfigKey"],
                    "connection_id": args["connectionId"],
                    "syncs": [args["sync"]],
                });
                for field in ["opts", "sync_mode", "full_resync"] {
                    if !args[field].is_null() {
                        body[field] = args[field].clone();
                    }
                }
                self.api(reqwest::Method::POST, "/sync/trigger", Some(body))
                    .await
                    .map(|_| Value::Null)
            }
            "startSync" => {
                let body = json!({
                    "provider_config_key": args["providerConfigKey"],
                    "connection_id": args["connectionId"],
                    "syncs": args["syncs"],
                });
                self.api(reqwest::Method::POST, "/sync/start", Some(body))
                    .await
                    .map(|_| Value::Null)
            }
            other => Err(HostError::new(format!("`{other}` is not a nango function"))),
        }
    }

    async fn batch(&self, op: BatchOp, model: &str, batch: Vec<Value>) -> Result<(), HostError> {
        if !self.outputs.is_empty() && !self.outputs.iter().any(|m| m == model) {
            return Err(HostError::new(format!(
                "model `{model}` is not an output of this function (declared: {})",
                self.outputs.join(", ")
            )));
        }
        // The checks a real save makes, so a dry run fails where a run would.
        records::check_batch(&batch)?;
        let mut report = self.report.lock().expect("report");
        let target = match op {
            BatchOp::Save => &mut report.saved,
            BatchOp::Update => &mut report.updated,
            BatchOp::Delete => &mut report.deleted,
        };
        target.entry(model.to_string()).or_default().extend(batch);
        Ok(())
    }

    fn log(&self, level: Level, message: &str) {
        eprintln!("[{level:?}] {message}");
        self.report
            .lock()
            .expect("report")
            .logs
            .push((level, message.to_string()));
    }
}

fn pick<'p>(
    functions: &'p [CompiledFunction],
    name: &str,
    integration: Option<&str>,
) -> anyhow::Result<&'p CompiledFunction> {
    let matches: Vec<&CompiledFunction> = functions
        .iter()
        .filter(|f| f.name == name && integration.is_none_or(|i| f.integration == i))
        .collect();
    match matches.as_slice() {
        [one] => Ok(one),
        [] => bail!(
            "the project has no function `{name}`{}",
            integration
                .map(|i| format!(" for integration `{i}`"))
                .unwrap_or_default()
        ),
        many => bail!(
            "`{name}` is in several integrations ({}); pass --integration",
            many.iter()
                .map(|f| f.integration.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

pub async fn run(options: Options) -> anyhow::Result<Report> {
    let project = crate::deploy::compile(&options.dir)?;
    let function = pick(
        &project.functions,
        &options.function,
        options.integration.as_deref(),
    )?;
    if function.function_type() == FunctionType::OnEvent {
        bail!(
            "`{}` is an on-event script; dry runs take syncs and actions",
            function.name
        );
    }
    let bundle = Bundle::parse(&function.bundle).map_err(anyhow::Error::msg)?;
    let report = Arc::new(Mutex::new(Report::default()));
    let host = Arc::new(DryRunHost {
        http: reqwest::Client::new(),
        fetch: lasso_services::http::fetch_client(Arc::new(
            lasso_services::outbound::Policy::default(),
        ))?,
        locks: Mutex::default(),
        base: options.host.trim_end_matches('/').to_string(),
        secret_key: options.secret_key.clone(),
        integration: function.integration.clone(),
        connection_id: options.connection_id.clone(),
        outputs: function.config.output.clone(),
        report: report.clone(),
    });
    let connection = host
        .connection()
        .await
        .map_err(|e| anyhow::anyhow!(e.message))
        .with_context(|| {
            format!(
                "reading connection `{}` from {}",
                options.connection_id, options.host
            )
        })?;
    let provider = connection["provider"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let paginate = host
        .get_json(&format!("/providers/{}", urlencode(&provider)))
        .await
        .ok()
        .and_then(|p| p["data"]["proxy"]["paginate"].as_object().cloned())
        .map(Value::Object);
    let info = RunInfo {
        connection_id: Some(options.connection_id.clone()),
        provider_config_key: Some(function.integration.clone()),
        provider: Some(provider),
        variant: None,
        last_sync_date: None,
        paginate,
        // A dry run is one execution of its own.
        execution_id: Some(uuid::Uuid::new_v4().to_string()),
    };
    let input = match function.function_type() {
        FunctionType::Action => Some(options.input.unwrap_or(Value::Null)),
        _ => None,
    };
    let output = sandbox::run(
        &bundle,
        input,
        info,
        host,
        options.limits,
        CancellationToken::new(),
    )
    .await;
    let mut report = std::mem::take(&mut *report.lock().expect("report"));
    report.output = Some(output);
    Ok(report)
}

/// Prints the report: per model a count and the records as JSON lines, then the result.
pub fn print(report: &Report) {
    for (verb, models) in [
        ("save", &report.saved),
        ("update", &report.updated),
        ("delete", &report.deleted),
    ] {
        for (model, rows) in models {
            println!("would {verb} {} {model} record(s):", rows.len());
            for row in rows {
                println!("{row}");
            }
        }
    }
    for (op, metadata) in &report.metadata {
        println!("would {op}: {metadata}");
    }
    if let Some(checkpoint) = &report.checkpoint {
        println!("would save checkpoint: {checkpoint}");
    }
    match &report.output {
        Some(Ok(value)) => println!("returned: {value}"),
        Some(Err(e)) => {
            println!("failed ({:?}): {}", e.kind, e.message);
            if let Some(payload) = &e.payload {
                println!("payload: {payload}");
            }
            if let Some(stack) = &e.stack {
                println!("{stack}");
            }
        }
        None => {}
    }
}
