//! The logs model: an operation per sync run, action, webhook, proxy call, auth event or
//! deploy, and the messages under it. Stored through a the log sink adapter (`adapters::LogSink`).

use crate::EnvironmentId;
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
    pub environment_id: EnvironmentId,
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
    pub environment_id: EnvironmentId,
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
    pub environment_id: EnvironmentId,
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
/// Messages, oldest first, use the same shape with their (created_at, id).
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

    pub fn of_message(m: &Message) -> Self {
        Self {
            started_at_micros: m.created_at.timestamp_micros(),
            id: m.id,
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

/// One operation and the messages under it, collected while it runs and written in one batch
/// when it ends (so a Lambda flushes before it returns). Known secrets are scrubbed from every
/// message as it is added.
pub struct OperationLog {
    operation: Operation,
    messages: Vec<Message>,
    secrets: Vec<String>,
}

/// Shown in place of a secret found in a log message.
pub const REDACTED: &str = "[REDACTED]";

/// Secrets shorter than this are not scrubbed: they would match ordinary text.
const MIN_SECRET_LEN: usize = 6;

impl OperationLog {
    pub fn start(
        environment_id: EnvironmentId,
        kind: OperationKind,
        integration: Option<&str>,
        connection: Option<&str>,
        script: Option<&str>,
    ) -> Self {
        Self {
            operation: Operation {
                id: Uuid::now_v7(),
                environment_id,
                kind,
                state: OperationState::Running,
                integration: integration.map(str::to_string),
                connection: connection.map(str::to_string),
                script: script.map(str::to_string),
                started_at: Utc::now(),
                ended_at: None,
                error: None,
                meta: serde_json::Value::Object(Default::default()),
            },
            messages: Vec::new(),
            secrets: Vec::new(),
        }
    }

    pub fn id(&self) -> Uuid {
        self.operation.id
    }

    /// Values that must never appear in a message (a connection's tokens, keys, passwords).
    pub fn scrub(&mut self, secrets: impl IntoIterator<Item = String>) {
        self.secrets
            .extend(secrets.into_iter().filter(|s| s.len() >= MIN_SECRET_LEN));
    }

    fn clean(&self, text: &str) -> String {
        self.secrets.iter().fold(text.to_string(), |t, secret| {
            t.replace(secret.as_str(), REDACTED)
        })
    }

    pub fn message(
        &mut self,
        level: Level,
        kind: MessageKind,
        text: &str,
        meta: serde_json::Value,
    ) {
        let message = self.clean(text);
        let meta = match serde_json::from_str(&self.clean(&meta.to_string())) {
            Ok(meta) => meta,
            Err(_) => serde_json::Value::Null,
        };
        self.messages.push(Message {
            id: Uuid::now_v7(),
            operation_id: self.operation.id,
            environment_id: self.operation.environment_id,
            created_at: Utc::now(),
            level,
            kind,
            message,
            meta,
        });
    }

    pub fn set_meta(&mut self, key: &str, value: serde_json::Value) {
        if let serde_json::Value::Object(meta) = &mut self.operation.meta {
            meta.insert(key.to_string(), value);
        }
    }

    /// Ends the operation: what to write.
    pub fn finish(mut self, state: OperationState, error: Option<&str>) -> LogBatch {
        self.operation.state = state;
        self.operation.ended_at = Some(Utc::now());
        self.operation.error = error.map(|e| self.clean(e));
        LogBatch {
            operations: vec![self.operation],
            messages: self.messages,
        }
    }
}

/// `text` with every secret (of at least a few characters) replaced by [`REDACTED`].
pub fn redact(text: &str, secrets: &[String]) -> String {
    secrets
        .iter()
        .filter(|s| s.len() >= MIN_SECRET_LEN)
        .fold(text.to_string(), |t, secret| {
            t.replace(secret.as_str(), REDACTED)
        })
}

/// Every string in `value` redacted (a task's error, a script's output).
pub fn redact_value(value: &mut serde_json::Value, secrets: &[String]) {
    match value {
        serde_json::Value::String(s) => *s = redact(s, secrets),
        serde_json::Value::Array(items) => items.iter_mut().for_each(|v| redact_value(v, secrets)),
        serde_json::Value::Object(fields) => {
            fields.values_mut().for_each(|v| redact_value(v, secrets))
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_scrubbed_from_messages_meta_and_errors() {
        let mut log = OperationLog::start(
            EnvironmentId(1),
            OperationKind::Sync,
            Some("github"),
            Some("c1"),
            Some("issues"),
        );
        log.scrub(["gho_supersecret".to_string(), "abc".to_string()]);
        log.message(
            Level::Info,
            MessageKind::Log,
            "token is gho_supersecret, abc stays",
            serde_json::json!({"header": "Bearer gho_supersecret"}),
        );
        let batch = log.finish(OperationState::Failed, Some("failed with gho_supersecret"));
        let text = serde_json::to_string(&(batch.operations, batch.messages)).unwrap();
        assert!(!text.contains("gho_supersecret"), "{text}");
        assert!(
            text.contains(REDACTED) && text.contains("abc stays"),
            "{text}"
        );
    }

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
