//! What a task carries (its `payload` column) and what a sync run reports, decoded once when
//! the task is read.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The payload of each task kind.
#[derive(Debug, Clone, Serialize, Deserialize)]
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

#[derive(Debug, Clone, Serialize, Deserialize)]
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
}

/// What a sync run changed in one model.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ModelResult {
    pub added: u64,
    pub updated: u64,
    pub deleted: u64,
}
