//! A fake provider for incremental syncs (the `contacts` sync of tests/fixtures/schedules-project):
//! `GET /contacts?since=<version>` lists the contacts changed since that version.

use std::collections::HashMap;
use std::sync::Mutex;

use axum::Json;
use axum::extract::{Query, State};
use serde_json::{Value, json};
use std::sync::Arc;

/// The fake provider: `GET /contacts` lists the contacts changed since `since` (a version).
#[derive(Default)]
pub struct Upstream {
    pub contacts: Mutex<Vec<Value>>,
}

impl Upstream {
    pub fn put(&self, id: &str, name: &str) {
        let mut contacts = self.contacts.lock().unwrap();
        let version = contacts.len() as u64 + 1;
        contacts.retain(|c| c["id"] != id);
        contacts.push(json!({"id": id, "name": name, "version": version}));
    }
}

pub async fn list_contacts(
    State(up): State<Arc<Upstream>>,
    Query(q): Query<HashMap<String, String>>,
) -> Json<Value> {
    let since: u64 = q.get("since").map_or(0, |s| s.parse().unwrap());
    let contacts = up.contacts.lock().unwrap();
    Json(Value::Array(
        contacts
            .iter()
            .filter(|c| c["version"].as_u64().unwrap() > since)
            .cloned()
            .collect(),
    ))
}
