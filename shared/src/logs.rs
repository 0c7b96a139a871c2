//! The logs model: an operation per sync run, action, webhook, proxy call, auth event or
//! deploy, and the messages under it. Stored through a [`crate::adapters::LogSink`].

use base64::Engine;
use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OperationKind {
    Sync,
    Action,
    Webhook,
    Proxy,
    Auth,
    Deploy,
    Task,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OperationState {
    Waiting,
    Running,
    Success,
    Failed,
    Cancelled,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Operation {
    pub id: Uuid,
    pub environment_id: i64,
    pub kind: OperationKind,
    pub state: OperationState,
    pub integration: Option<String>,
    pub connection: Option<String>,
    pub script: Option<String>,
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    pub error: Option<String>,
    #[serde(default)]
    pub meta: serde_json::Value,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    Debug,
    Info,
    Warn,
    Error,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageKind {
    /// A line the script logged.
    Log,
    /// An outgoing HTTP call.
    Http,
    /// The records result of a sync run.
    Result,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub id: Uuid,
    pub operation_id: Uuid,
    pub environment_id: i64,
    pub created_at: DateTime<Utc>,
    pub level: Level,
    pub kind: MessageKind,
    pub message: String,
    #[serde(default)]
    pub meta: serde_json::Value,
}

/// What one write carries: operations are upserted by id, messages appended.
#[derive(Debug, Clone, Default)]
pub struct LogBatch {
    pub operations: Vec<Operation>,
    pub messages: Vec<Message>,
}

#[derive(Debug, Clone, Default)]
pub struct OperationQuery {
    pub environment_id: i64,
    pub kinds: Vec<OperationKind>,
    pub states: Vec<OperationState>,
    pub integration: Option<String>,
    pub connection: Option<String>,
    pub script: Option<String>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    /// Matches the operation's error or any of its messages.
    pub text: Option<String>,
    pub cursor: Option<String>,
    pub limit: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

/// Operations are listed newest first; the cursor is the last (started_at, id) handed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub started_at_micros: i64,
    pub id: Uuid,
}

impl Cursor {
    pub fn of(op: &Operation) -> Self {
        Self {
            started_at_micros: op.started_at.timestamp_micros(),
            id: op.id,
        }
    }

    pub fn encode(&self) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(format!("{}:{}", self.started_at_micros, self.id))
    }

    pub fn decode(raw: &str) -> Result<Self> {
        let bad = || Error::invalid("cursor", "not a cursor this API handed out");
        let text = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(raw)
            .map_err(|_| bad())?;
        let text = String::from_utf8(text).map_err(|_| bad())?;
        let (micros, id) = text.split_once(':').ok_or_else(bad)?;
        Ok(Self {
            started_at_micros: micros.parse().map_err(|_| bad())?,
            id: id.parse().map_err(|_| bad())?,
        })
    }

    pub fn started_at(&self) -> DateTime<Utc> {
        Utc.timestamp_micros(self.started_at_micros)
            .single()
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trips_and_rejects_garbage() {
        let c = Cursor {
            started_at_micros: 1_700_000_000_123_456,
            id: Uuid::now_v7(),
        };
        assert_eq!(Cursor::decode(&c.encode()).unwrap(), c);
        assert!(Cursor::decode("nope").is_err());
    }
}
