//! What a task carries (its `payload` column) and what a sync run reports. The column is read
//! into these types by the queries that load a task (`#[sqlx(json)]`), so no caller parses it
//! again; only typed payloads are ever written.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The payload of each task kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Payload {
    /// A deployed function of an integration, run for one connection.
    Function(FunctionPayload),
    /// A bare module from the script store (the walking skeleton, smoke runs).
    Script {
        script_key: String,
        #[serde(default)]
        input: Value,
    },
}

impl Payload {
    /// A script task's payload: the module at `script_key`, run with `input`.
    pub fn script(script_key: impl Into<String>, input: Value) -> Self {
        Self::Script {
            script_key: script_key.into(),
            input,
        }
    }

    /// The function payload, when this is one.
    pub fn function(&self) -> Option<&FunctionPayload> {
        match self {
            Self::Function(p) => Some(p),
            Self::Script { .. } => None,
        }
    }

    /// Whether an action's caller stopped waiting and wants the `async_action` webhook.
    pub fn has_async_caller(&self) -> bool {
        self.function().is_some_and(|p| p.async_caller)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionPayload {
    /// The integration's unique key.
    pub integration: String,
    pub connection_id: String,
    pub function: String,
    /// Action input, or a webhook's payload.
    #[serde(default)]
    pub input: Option<Value>,
    /// Syncs: run as a full sync (with deletion detection when the sync tracks deletes).
    #[serde(default)]
    pub full: bool,
    #[serde(default)]
    pub last_sync_date: Option<chrono::DateTime<chrono::Utc>>,
    /// Actions: the caller stopped waiting and gets the `async_action` webhook. Set in the
    /// column by `tasks::flag_async_caller` while the task is unfinished, so it can be set
    /// after the task was written.
    #[serde(default, rename = "async", skip_serializing_if = "std::ops::Not::not")]
    pub async_caller: bool,
}

impl FunctionPayload {
    /// The payload key of [`FunctionPayload::async_caller`].
    pub const ASYNC_CALLER_KEY: &str = "async";
}

/// What a sync run changed in one model.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ModelResult {
    pub added: u64,
    pub updated: u64,
    pub deleted: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn payloads_read_back_as_written_and_the_async_flag_is_the_column_key() {
        let p = Payload::Function(FunctionPayload {
            integration: "gh".into(),
            connection_id: "c1".into(),
            function: "issues".into(),
            input: Some(json!({"n": 1})),
            full: true,
            last_sync_date: None,
            async_caller: false,
        });
        let v = serde_json::to_value(&p).unwrap();
        assert!(v.get(FunctionPayload::ASYNC_CALLER_KEY).is_none());
        let mut flagged = v.clone();
        flagged[FunctionPayload::ASYNC_CALLER_KEY] = json!(true);
        let back: Payload = serde_json::from_value(flagged).unwrap();
        assert!(back.has_async_caller());
        assert_eq!(
            serde_json::to_value(back.function().unwrap().clone()).unwrap()["full"],
            true
        );

        let s: Payload = serde_json::from_value(json!({"script_key": "k.js"})).unwrap();
        assert!(
            matches!(&s, Payload::Script { script_key, input } if script_key == "k.js" && input.is_null())
        );
        assert!(!s.has_async_caller());
    }
}
