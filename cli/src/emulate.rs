//! `lasso emulate`: what AWS does around the four functions, for functions served by
//! `cargo lambda watch` against moto — EventBridge invoking the scheduler and the dispatcher on
//! their schedules, and each runner group's SQS event source mapping: receive a batch, invoke
//! the group's runner function with it, delete what the runner did not report as failed.
//!
//! It reads the same settings as the functions (LASSO_RUNNER_QUEUES / LASSO_RUNNER_QUEUE_URL)
//! to find the queues.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context as _, bail};
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lasso_services::adapters::TaskTransport;
use lasso_services::adapters::transport::RunnerQueues;
use lasso_services::config::{Config, TransportConfig};
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::event_source::{self, Mapping};
use crate::workers::wait_or_stop;

pub struct EmulateOptions {
    /// Where `cargo lambda watch` serves the functions' invoke API.
    pub endpoint: String,
    pub scheduler_every: Duration,
    pub dispatcher_every: Duration,
    /// The invoke endpoint of each runner group's runner function; groups not listed use
    /// `endpoint`'s `runner` when they are the configured LASSO_RUNNER_GROUP.
    pub runners: BTreeMap<String, String>,
    pub mapping: Mapping,
}

/// Invokes functions through the Lambda invoke API (`POST
/// /2015-03-31/functions/<name>/invocations`), as `cargo lambda watch` serves it.
#[derive(Clone)]
struct Invoker {
    http: reqwest::Client,
}

impl Default for Invoker {
    fn default() -> Self {
        Self {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(900))
                .build()
                .expect("HTTP client"),
        }
    }
}

impl Invoker {
    /// The function's response; a function error (Lambda's `X-Amz-Function-Error`, or an
    /// `errorType` body) is an error.
    async fn invoke(&self, endpoint: &str, function: &str, event: &Value) -> anyhow::Result<Value> {
        let url = format!(
            "{}/2015-03-31/functions/{function}/invocations",
            endpoint.trim_end_matches('/')
        );
        let response = self
            .http
            .post(&url)
            .json(event)
            .send()
            .await
            .with_context(|| format!("invoking {function} at {url}"))?;
        let status = response.status();
        let function_error = response.headers().contains_key("x-amz-function-error");
        let body = response.text().await?;
        let value: Value = serde_json::from_str(&body).unwrap_or(Value::String(body.clone()));
        if !status.is_success() || function_error || value.get("errorType").is_some() {
            bail!("{function} failed ({status}): {body}");
        }
        Ok(value)
    }
}

/// An EventBridge scheduled event, as the schedule rules send.
fn scheduled_event(rule: &str) -> Value {
    json!({
        "version": "0",
        "id": uuid::Uuid::new_v4().to_string(),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "000000000000",
        "time": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "region": "us-east-1",
        "resources": [format!("arn:aws:events:us-east-1:000000000000:rule/{rule}")],
        "detail": {}
    })
}

/// Runs until `shutdown` turns true.
pub async fn run(
    config: &Config,
    sdk: &aws_config::SdkConfig,
    options: EmulateOptions,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let TransportConfig::Sqs { queues, .. } = &config.transport else {
        bail!("lasso emulate bridges SQS queues: set LASSO_TASK_TRANSPORT=sqs and the queue URLs");
    };
    let mut runners = options.runners.clone();
    runners
        .entry(config.runner_group.clone())
        .or_insert_with(|| options.endpoint.clone());
    if let Some(unknown) = runners.keys().find(|g| !queues.contains_key(*g)) {
        bail!("--runner {unknown}=…: runner group `{unknown}` has no queue in LASSO_RUNNER_QUEUES");
    }
    let sqs = RunnerQueues::sqs(sdk, queues.clone());
    let invoker = Invoker::default();
    let mut tasks = JoinSet::new();

    for (function, every) in [
        ("scheduler", options.scheduler_every),
        ("dispatcher", options.dispatcher_every),
    ] {
        let (invoker, endpoint, mut stop) =
            (invoker.clone(), options.endpoint.clone(), shutdown.clone());
        tasks.spawn(async move {
            // EventBridge fires on the clock whether or not the last invocation has ended (the
            // scheduler's runs for most of a minute).
            let mut clock = tokio::time::interval(every);
            let mut running = JoinSet::new();
            loop {
                tokio::select! {
                    _ = clock.tick() => {}
                    _ = stop.changed() => break,
                }
                let (invoker, endpoint) = (invoker.clone(), endpoint.clone());
                running.spawn(async move {
                    match invoker.invoke(&endpoint, function, &scheduled_event(function)).await {
                        Ok(report) => tracing::info!(function, %report, "scheduled invocation"),
                        Err(e) => tracing::error!(function, error = %format!("{e:#}"), "scheduled invocation failed"),
                    }
                });
                while running.try_join_next().is_some() {}
            }
            running.abort_all();
        });
    }

    for group in queues.keys() {
        let Some(endpoint) = runners.get(group).cloned() else {
            tracing::warn!(runner_group = %group, "no runner endpoint for the group (--runner {group}=URL); its queue is not bridged");
            continue;
        };
        let queue = sqs.for_group(group)?;
        let mapping = Mapping {
            queue_arn: format!("arn:aws:sqs:us-east-1:000000000000:lasso-runner-{group}"),
            ..options.mapping.clone()
        };
        let (invoker, mut stop, group) = (invoker.clone(), shutdown.clone(), group.clone());
        tasks.spawn(async move {
            tracing::info!(runner_group = %group, %endpoint, "bridging the group's queue to its runner");
            while !*stop.borrow() {
                let round = bridge_once(queue.as_ref(), &mapping, &invoker, &endpoint);
                tokio::select! {
                    result = round => if let Err(e) = result {
                        tracing::error!(runner_group = %group, error = %format!("{e:#}"), "event source mapping round failed");
                        if wait_or_stop(&mut stop, Duration::from_secs(1)).await {
                            return;
                        }
                    },
                    _ = stop.changed() => return,
                }
            }
        });
    }

    while tasks.join_next().await.is_some() {}
    Ok(())
}

/// One receive → invoke → delete round of a group's event source mapping.
async fn bridge_once(
    queue: &dyn TaskTransport,
    mapping: &Mapping,
    invoker: &Invoker,
    endpoint: &str,
) -> anyhow::Result<usize> {
    event_source::pump_once(queue, mapping, |event: SqsEvent| async move {
        let response = invoker
            .invoke(endpoint, "runner", &serde_json::to_value(&event)?)
            .await?;
        Ok(serde_json::from_value::<SqsBatchResponse>(response)?)
    })
    .await
}
