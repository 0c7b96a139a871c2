//! An SQS event source mapping, as Lambda runs it: receive a batch, invoke the runner with an
//! `SqsEvent`, delete what the runner did not report as failed. Failed messages stay invisible
//! until their visibility timeout passes, then come back (and reach the DLQ on AWS).

use std::future::Future;
use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lasso_services::adapters::TaskTransport;
use lasso_services::adapters::transport::{Delivery, MAX_BATCH};
use serde_json::json;

#[derive(Clone)]
pub struct Mapping {
    pub batch_size: usize,
    pub wait: Duration,
    pub visibility: Duration,
    /// ARN put on each record (`eventSourceARN`), as Lambda does.
    pub queue_arn: String,
    /// For a queue without a redrive policy (the local one): a message received more often
    /// than this is dropped with an error log, as SQS would move it to the dead-letter queue.
    pub max_receive_count: Option<u32>,
}

impl Default for Mapping {
    fn default() -> Self {
        Self {
            batch_size: 10,
            wait: Duration::from_secs(1),
            visibility: Duration::from_secs(30),
            queue_arn: "arn:aws:sqs:us-east-1:000000000000:lasso-runner".into(),
            max_receive_count: None,
        }
    }
}

/// The Lambda wire format of an SQS event for these deliveries.
pub fn sqs_event_json(deliveries: &[Delivery], queue_arn: &str) -> serde_json::Value {
    let records: Vec<serde_json::Value> = deliveries
        .iter()
        .map(|d| {
            json!({
                "messageId": d.message_id,
                "receiptHandle": d.receipt_handle,
                "body": d.body,
                "attributes": {
                    "ApproximateReceiveCount": d.receive_count.to_string(),
                    "SentTimestamp": chrono::Utc::now().timestamp_millis().to_string(),
                },
                "messageAttributes": {},
                "md5OfBody": "",
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": "us-east-1",
            })
        })
        .collect();
    json!({ "Records": records })
}

/// One receive → invoke → delete round. Returns how many messages were received. An invoke
/// error leaves the whole batch for redelivery, as Lambda does when a function errors.
pub async fn pump_once<F, Fut>(
    transport: &dyn TaskTransport,
    mapping: &Mapping,
    invoke: F,
) -> anyhow::Result<usize>
where
    F: FnOnce(SqsEvent) -> Fut,
    Fut: Future<Output = anyhow::Result<SqsBatchResponse>>,
{
    let mut deliveries = transport
        .receive(mapping.batch_size, mapping.wait, mapping.visibility)
        .await?;
    // A receive hands out at most MAX_BATCH; a larger batch is gathered from more receives
    // while they come back full, as the event source mapping fills a batch over its window.
    let mut last = deliveries.len();
    while last == MAX_BATCH && deliveries.len() < mapping.batch_size {
        let more = transport
            .receive(
                mapping.batch_size - deliveries.len(),
                Duration::ZERO,
                mapping.visibility,
            )
            .await?;
        last = more.len();
        deliveries.extend(more);
    }
    let received = deliveries.len();
    let (dead, deliveries): (Vec<Delivery>, Vec<Delivery>) =
        deliveries.into_iter().partition(|d| {
            mapping
                .max_receive_count
                .is_some_and(|max| d.receive_count > max)
        });
    if !dead.is_empty() {
        for d in &dead {
            tracing::error!(message_id = %d.message_id, receive_count = d.receive_count, body = %d.body, "message dead-lettered: dropped after too many deliveries");
        }
        let handles: Vec<String> = dead.iter().map(|d| d.receipt_handle.clone()).collect();
        transport.delete(&handles).await?;
    }
    if deliveries.is_empty() {
        return Ok(received);
    }
    let event: SqsEvent = serde_json::from_value(sqs_event_json(&deliveries, &mapping.queue_arn))?;
    let response = invoke(event).await?;
    let failed: Vec<&str> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    let done: Vec<String> = deliveries
        .iter()
        .filter(|d| !failed.contains(&d.message_id.as_str()))
        .map(|d| d.receipt_handle.clone())
        .collect();
    if !done.is_empty() {
        transport.delete(&done).await?;
    }
    Ok(received)
}

#[cfg(test)]
mod tests {
    use super::*;
    use lasso_services::adapters::transport::{LocalTransport, OutgoingMessage};

    async fn batch_sizes(queued: usize, batch_size: usize) -> Vec<usize> {
        let transport = LocalTransport::new();
        let messages: Vec<OutgoingMessage> = (0..queued)
            .map(|i| OutgoingMessage {
                id: i.to_string(),
                body: i.to_string(),
            })
            .collect();
        transport.send_batch(&messages).await.unwrap();
        let mapping = Mapping {
            batch_size,
            wait: Duration::ZERO,
            ..Mapping::default()
        };
        let mut sizes = Vec::new();
        loop {
            let mut size = 0;
            let received = pump_once(&transport, &mapping, |event| {
                size = event.records.len();
                async { Ok(SqsBatchResponse::default()) }
            })
            .await
            .unwrap();
            if received == 0 {
                return sizes;
            }
            sizes.push(size);
        }
    }

    #[tokio::test]
    async fn a_batch_larger_than_one_receive_is_gathered_from_several() {
        assert_eq!(batch_sizes(250, 100).await, [100, 100, 50]);
        assert_eq!(batch_sizes(25, 10).await, [10, 10, 5]);
    }
}
