//! How tasks travel from the dispatcher to the runners: SQS on AWS, an in-process queue with
//! the same semantics (at-least-once, visibility timeout, receipt handles) in `lasso dev`.
//!
//! On AWS the receive side is Lambda's event source mapping; `receive`/`delete` serve the local
//! runner loop, `lasso emulate`'s bridge, and tests.

use std::collections::VecDeque;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::{Error, Result};

/// SQS's SendMessageBatch / DeleteMessageBatch limit.
pub const MAX_BATCH: usize = 10;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingMessage {
    /// Unique within one `send_batch` call; failures are reported by it.
    pub id: String,
    pub body: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub message_id: String,
    pub receipt_handle: String,
    pub body: String,
    pub receive_count: u32,
}

#[async_trait]
pub trait TaskTransport: Send + Sync {
    /// Sends the messages (any number; chunked as needed). Returns the ids that failed.
    async fn send_batch(&self, messages: &[OutgoingMessage]) -> Result<Vec<String>>;
    /// Waits up to `wait` for messages; received messages stay invisible for `visibility`.
    async fn receive(
        &self,
        max: usize,
        wait: Duration,
        visibility: Duration,
    ) -> Result<Vec<Delivery>>;
    async fn delete(&self, receipt_handles: &[String]) -> Result<()>;
    async fn change_visibility(&self, receipt_handle: &str, visibility: Duration) -> Result<()>;
}

pub struct SqsTransport {
    client: aws_sdk_sqs::Client,
    queue_url: String,
}

impl SqsTransport {
    pub fn new(sdk: &aws_config::SdkConfig, queue_url: String) -> Self {
        Self {
            client: aws_sdk_sqs::Client::new(sdk),
            queue_url,
        }
    }
}

fn sqs_error(action: &str, e: impl std::error::Error + Send + Sync + 'static) -> Error {
    // The SDK's Display shows only the outermost layer; its context names the cause.
    Error::Transport {
        message: format!("{action}: {}", aws_sdk_sqs::error::DisplayErrorContext(&e)),
        source: Some(Box::new(e)),
    }
}

fn secs(d: Duration) -> i32 {
    i32::try_from(d.as_secs()).unwrap_or(i32::MAX)
}

#[async_trait]
impl TaskTransport for SqsTransport {
    async fn send_batch(&self, messages: &[OutgoingMessage]) -> Result<Vec<String>> {
        let mut failed = Vec::new();
        for chunk in messages.chunks(MAX_BATCH) {
            let entries = chunk
                .iter()
                .map(|m| {
                    aws_sdk_sqs::types::SendMessageBatchRequestEntry::builder()
                        .id(&m.id)
                        .message_body(&m.body)
                        .build()
                        .map_err(|e| sqs_error("send", e))
                })
                .collect::<Result<Vec<_>>>()?;
            match self
                .client
                .send_message_batch()
                .queue_url(&self.queue_url)
                .set_entries(Some(entries))
                .send()
                .await
            {
                Ok(out) => failed.extend(out.failed().iter().map(|f| f.id().to_string())),
                Err(e) => {
                    tracing::warn!(error = %aws_sdk_sqs::error::DisplayErrorContext(&e), "SendMessageBatch failed");
                    failed.extend(chunk.iter().map(|m| m.id.clone()));
                }
            }
        }
        Ok(failed)
    }

    async fn receive(
        &self,
        max: usize,
        wait: Duration,
        visibility: Duration,
    ) -> Result<Vec<Delivery>> {
        let out = self
            .client
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(max.clamp(1, MAX_BATCH) as i32)
            .wait_time_seconds(secs(wait).min(20))
            .visibility_timeout(secs(visibility))
            .message_system_attribute_names(
                aws_sdk_sqs::types::MessageSystemAttributeName::ApproximateReceiveCount,
            )
            .send()
            .await
            .map_err(|e| sqs_error("receive", e))?;
        Ok(out
            .messages()
            .iter()
            .map(|m| Delivery {
                message_id: m.message_id().unwrap_or_default().to_string(),
                receipt_handle: m.receipt_handle().unwrap_or_default().to_string(),
                body: m.body().unwrap_or_default().to_string(),
                receive_count: m
                    .attributes()
                    .and_then(|a| {
                        a.get(&aws_sdk_sqs::types::MessageSystemAttributeName::ApproximateReceiveCount)
                    })
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(1),
            })
            .collect())
    }

    async fn delete(&self, receipt_handles: &[String]) -> Result<()> {
        for (n, chunk) in receipt_handles.chunks(MAX_BATCH).enumerate() {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    aws_sdk_sqs::types::DeleteMessageBatchRequestEntry::builder()
                        .id(format!("m{}", n * MAX_BATCH + i))
                        .receipt_handle(r)
                        .build()
                        .map_err(|e| sqs_error("delete", e))
                })
                .collect::<Result<Vec<_>>>()?;
            let out = self
                .client
                .delete_message_batch()
                .queue_url(&self.queue_url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| sqs_error("delete", e))?;
            if let Some(f) = out.failed().first() {
                return Err(Error::transport(format!(
                    "delete: {} of {} messages failed ({})",
                    out.failed().len(),
                    chunk.len(),
                    f.message().unwrap_or(f.code())
                )));
            }
        }
        Ok(())
    }

    async fn change_visibility(&self, receipt_handle: &str, visibility: Duration) -> Result<()> {
        self.client
            .change_message_visibility()
            .queue_url(&self.queue_url)
            .receipt_handle(receipt_handle)
            .visibility_timeout(secs(visibility))
            .send()
            .await
            .map_err(|e| sqs_error("change visibility", e))?;
        Ok(())
    }
}

struct LocalMessage {
    id: String,
    body: String,
    visible_at: Instant,
    receipt: Option<String>,
    receive_count: u32,
}

/// In-process queue for `lasso dev`, with SQS's delivery semantics so the runner code path is
/// the same. Messages are lost on restart; the dispatcher re-sends tasks stuck in DISPATCHED.
#[derive(Default)]
pub struct LocalTransport {
    messages: Mutex<VecDeque<LocalMessage>>,
    arrived: Notify,
}

impl LocalTransport {
    pub fn new() -> Self {
        Self::default()
    }

    fn take_visible(&self, max: usize, visibility: Duration) -> (Vec<Delivery>, Option<Instant>) {
        let now = Instant::now();
        let mut queue = self.messages.lock().expect("local queue lock");
        let mut out = Vec::new();
        let mut next_visible: Option<Instant> = None;
        for m in queue.iter_mut() {
            if m.visible_at > now {
                next_visible = Some(next_visible.map_or(m.visible_at, |n| n.min(m.visible_at)));
                continue;
            }
            if out.len() == max {
                break;
            }
            let receipt = uuid::Uuid::new_v4().to_string();
            m.receipt = Some(receipt.clone());
            m.visible_at = now + visibility;
            m.receive_count += 1;
            out.push(Delivery {
                message_id: m.id.clone(),
                receipt_handle: receipt,
                body: m.body.clone(),
                receive_count: m.receive_count,
            });
        }
        (out, next_visible)
    }
}

#[async_trait]
impl TaskTransport for LocalTransport {
    async fn send_batch(&self, messages: &[OutgoingMessage]) -> Result<Vec<String>> {
        let now = Instant::now();
        self.messages
            .lock()
            .expect("local queue lock")
            .extend(messages.iter().map(|m| LocalMessage {
                id: uuid::Uuid::new_v4().to_string(),
                body: m.body.clone(),
                visible_at: now,
                receipt: None,
                receive_count: 0,
            }));
        self.arrived.notify_waiters();
        Ok(Vec::new())
    }

    async fn receive(
        &self,
        max: usize,
        wait: Duration,
        visibility: Duration,
    ) -> Result<Vec<Delivery>> {
        let deadline = Instant::now() + wait;
        loop {
            let notified = self.arrived.notified();
            let (batch, next_visible) = self.take_visible(max.clamp(1, MAX_BATCH), visibility);
            if !batch.is_empty() {
                return Ok(batch);
            }
            let wake_at = next_visible.map_or(deadline, |n| n.min(deadline));
            if Instant::now() >= deadline {
                return Ok(Vec::new());
            }
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep_until(wake_at) => {}
            }
        }
    }

    async fn delete(&self, receipt_handles: &[String]) -> Result<()> {
        let mut queue = self.messages.lock().expect("local queue lock");
        queue.retain(|m| {
            !m.receipt
                .as_ref()
                .is_some_and(|r| receipt_handles.contains(r))
        });
        Ok(())
    }

    async fn change_visibility(&self, receipt_handle: &str, visibility: Duration) -> Result<()> {
        let mut queue = self.messages.lock().expect("local queue lock");
        match queue
            .iter_mut()
            .find(|m| m.receipt.as_deref() == Some(receipt_handle))
        {
            Some(m) => {
                m.visible_at = Instant::now() + visibility;
                Ok(())
            }
            None => Err(Error::transport(
                "change visibility: unknown receipt handle",
            )),
        }
    }
}

/// Every runner group's queue. On SQS the groups are the configured ones
/// (`LASSO_RUNNER_QUEUES`); locally a group's in-process queue appears on first use, so
/// `lasso dev` routes to any group an environment names.
pub struct RunnerQueues {
    sqs: Option<(aws_sdk_sqs::Client, BTreeMap<String, String>)>,
    queues: Mutex<HashMap<String, Arc<dyn TaskTransport>>>,
}

impl RunnerQueues {
    pub fn sqs(sdk: &aws_config::SdkConfig, urls: BTreeMap<String, String>) -> Self {
        Self {
            sqs: Some((aws_sdk_sqs::Client::new(sdk), urls)),
            queues: Mutex::default(),
        }
    }

    pub fn local() -> Self {
        Self {
            sqs: None,
            queues: Mutex::default(),
        }
    }

    /// The queue of `group`; an error names the group when it has no queue.
    pub fn for_group(&self, group: &str) -> Result<Arc<dyn TaskTransport>> {
        let mut queues = self.queues.lock().expect("runner queues lock");
        if let Some(q) = queues.get(group) {
            return Ok(q.clone());
        }
        let queue: Arc<dyn TaskTransport> = match &self.sqs {
            Some((client, urls)) => {
                let url = urls.get(group).ok_or_else(|| {
                    Error::transport(format!(
                        "runner group `{group}` has no queue in LASSO_RUNNER_QUEUES"
                    ))
                })?;
                Arc::new(SqsTransport {
                    client: client.clone(),
                    queue_url: url.clone(),
                })
            }
            None => Arc::new(LocalTransport::new()),
        };
        queues.insert(group.to_string(), queue.clone());
        Ok(queue)
    }
}
