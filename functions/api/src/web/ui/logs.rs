//! Logs: operations newest first with every filter in the URL, free text over messages and
//! errors, and an operation's page (messages, HTTP calls, result) that follows it while it runs.

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::routing::get;
use chrono::{DateTime, NaiveDateTime, Utc};
use lasso_services::EnvironmentId;
use lasso_services::logs::{
    Message, MessageKind, Operation, OperationKind, OperationQuery, OperationState,
};
use lasso_services::{Context, ErrorCode};
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

use crate::web::form::optional;
use crate::web::layout::{self, Section, badge, duration, optional_time, path_escape, time};
use crate::web::{Session, WebError, WebResult};

pub fn router() -> Router<Context> {
    Router::new()
        .route("/ui/logs", get(list))
        .route("/ui/logs/{id}", get(show))
}

const PAGE_SIZE: usize = 50;
/// How often a page with running operations refreshes them.
const POLL_MS: u32 = 2000;

const KINDS: [&str; 7] = [
    "sync", "action", "webhook", "proxy", "auth", "deploy", "task",
];
const STATES: [&str; 5] = ["waiting", "running", "success", "failed", "cancelled"];

/// The filters, as they appear in the URL.
#[derive(Deserialize, Default)]
pub struct Filters {
    kind: Option<String>,
    state: Option<String>,
    integration: Option<String>,
    connection: Option<String>,
    script: Option<String>,
    from: Option<String>,
    to: Option<String>,
    q: Option<String>,
    cursor: Option<String>,
}

fn enum_value<T: serde::de::DeserializeOwned>(field: &str, value: &str) -> WebResult<T> {
    serde_json::from_value(Value::String(value.to_string()))
        .map_err(|_| WebError::invalid(field, format!("`{value}` is not a known value")))
}

/// An ISO-8601 timestamp, or what a `datetime-local` field sends (read as UTC).
fn timestamp(field: &str, value: &str) -> WebResult<DateTime<Utc>> {
    if let Ok(t) = value.parse::<DateTime<Utc>>() {
        return Ok(t);
    }
    ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(value, f).ok())
        .map(|t| t.and_utc())
        .ok_or_else(|| WebError::invalid(field, format!("expected a date and time, got `{value}`")))
}

impl Filters {
    fn normalized(self) -> Self {
        Self {
            kind: optional(self.kind),
            state: optional(self.state),
            integration: optional(self.integration),
            connection: optional(self.connection),
            script: optional(self.script),
            from: optional(self.from),
            to: optional(self.to),
            q: optional(self.q),
            cursor: optional(self.cursor),
        }
    }

    fn query(&self, environment_id: EnvironmentId) -> WebResult<OperationQuery> {
        Ok(OperationQuery {
            environment_id,
            kinds: self
                .kind
                .iter()
                .map(|k| enum_value::<OperationKind>("kind", k))
                .collect::<WebResult<_>>()?,
            states: self
                .state
                .iter()
                .map(|s| enum_value::<OperationState>("state", s))
                .collect::<WebResult<_>>()?,
            integration: self.integration.clone(),
            connection: self.connection.clone(),
            script: self.script.clone(),
            from: self
                .from
                .as_deref()
                .map(|v| timestamp("from", v))
                .transpose()?,
            to: self.to.as_deref().map(|v| timestamp("to", v)).transpose()?,
            text: self.q.clone(),
            cursor: self.cursor.clone(),
            limit: PAGE_SIZE,
        })
    }

    fn pairs(&self) -> Vec<(&'static str, &str)> {
        [
            ("kind", &self.kind),
            ("state", &self.state),
            ("integration", &self.integration),
            ("connection", &self.connection),
            ("script", &self.script),
            ("from", &self.from),
            ("to", &self.to),
            ("q", &self.q),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.as_deref().map(|v| (k, v)))
        .collect()
    }
}

fn state_name(state: OperationState) -> &'static str {
    match state {
        OperationState::Waiting => "waiting",
        OperationState::Running => "running",
        OperationState::Success => "success",
        OperationState::Failed => "failed",
        OperationState::Cancelled => "cancelled",
    }
}

fn kind_name(kind: OperationKind) -> String {
    serde_json::to_value(kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

fn is_live(op: &Operation) -> bool {
    matches!(op.state, OperationState::Waiting | OperationState::Running)
}

fn select(name: &str, label: &str, options: &[&str], current: Option<&str>) -> Markup {
    html! {
        label { (label)
            select name=(name) {
                option value="" { "any" }
                @for o in options {
                    option value=(o) selected[current == Some(*o)] { (o) }
                }
            }
        }
    }
}

fn text_input(name: &str, label: &str, value: Option<&str>, kind: &str) -> Markup {
    html! {
        label { (label)
            input type=(kind) name=(name) value=[value];
        }
    }
}

/// The operations table of a page of results (refreshed while any of them runs).
fn table(ops: &[Operation]) -> Markup {
    let live = ops.iter().any(is_live);
    html! {
        div #operations data-poll=[live.then_some(POLL_MS)] {
            @if ops.is_empty() {
                p.panel.muted { "No operations match." }
            } @else {
                table.operations {
                    thead { tr { th { "Started" } th { "Kind" } th { "State" } th { "Integration" }
                        th { "Connection" } th { "Script" } th { "Duration" } th { "Error" } } }
                    tbody {
                        @for op in ops {
                            tr data-operation=(op.id) {
                                td { a href={ "/ui/logs/" (op.id) } { (time(op.started_at)) } }
                                td { (kind_name(op.kind)) }
                                td { (badge(state_name(op.state))) }
                                td { (op.integration.as_deref().unwrap_or("—")) }
                                td { (op.connection.as_deref().unwrap_or("—")) }
                                td { (op.script.as_deref().unwrap_or("—")) }
                                td.num { (duration(op.started_at, op.ended_at)) }
                                td.error { (op.error.as_deref().map(|e| truncate(e, 120)).unwrap_or_default()) }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_string(),
    }
}

async fn list(
    State(ctx): State<Context>,
    session: Session,
    Query(filters): Query<Filters>,
) -> WebResult<Markup> {
    let filters = filters.normalized();
    let query = filters.query(session.environment.id)?;
    let page = ctx.logs.search_operations(&query).await?;
    let pairs = filters.pairs();
    let next = page.next_cursor.as_deref().map(|c| {
        let mut with_cursor = pairs.clone();
        with_cursor.push(("cursor", c));
        format!("/ui/logs{}", layout::query_string(with_cursor))
    });
    Ok(layout::page(
        &session,
        Section::Logs,
        "Logs",
        html! {
            h1 { "Logs" }
            form.filters method="get" action="/ui/logs" {
                (text_input("q", "Search messages and errors", filters.q.as_deref(), "search"))
                (select("kind", "Kind", &KINDS, filters.kind.as_deref()))
                (select("state", "State", &STATES, filters.state.as_deref()))
                (text_input("integration", "Integration", filters.integration.as_deref(), "text"))
                (text_input("connection", "Connection", filters.connection.as_deref(), "text"))
                (text_input("script", "Script", filters.script.as_deref(), "text"))
                (text_input("from", "From (UTC)", filters.from.as_deref(), "datetime-local"))
                (text_input("to", "To (UTC)", filters.to.as_deref(), "datetime-local"))
                button type="submit" { "Search" }
                @if !pairs.is_empty() { a href="/ui/logs" { "Clear" } }
            }
            (table(&page.items))
            div.pager {
                @if filters.cursor.is_some() {
                    a href={ "/ui/logs" (layout::query_string(pairs.clone())) } { "← Newest" }
                }
                @if let Some(next) = next { a rel="next" href=(next) { "Older →" } }
            }
        },
    ))
}

fn http_row(m: &Message) -> Markup {
    let meta = &m.meta;
    let text = |k: &str| {
        meta.get(k)
            .map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| v.to_string())
            })
            .unwrap_or_default()
    };
    html! {
        tr {
            td { (time(m.created_at)) }
            td.mono { (text("method")) }
            td.mono { (text("endpoint")) }
            td.num { (text("status")) }
            td.num { (text("duration_ms")) " ms" }
        }
    }
}

fn operation_body(op: &Operation, messages: &[Message]) -> Markup {
    let http: Vec<&Message> = messages
        .iter()
        .filter(|m| m.kind == MessageKind::Http)
        .collect();
    let results: Vec<&Message> = messages
        .iter()
        .filter(|m| m.kind == MessageKind::Result)
        .collect();
    html! {
        div #operation data-poll=[is_live(op).then_some(POLL_MS)] {
            div.panel {
                dl.facts {
                    dt { "State" } dd { (badge(state_name(op.state))) }
                    dt { "Kind" } dd { (kind_name(op.kind)) }
                    dt { "Integration" } dd { (op.integration.as_deref().unwrap_or("—")) }
                    dt { "Connection" } dd {
                        @match (&op.integration, &op.connection) {
                            (Some(i), Some(c)) => a href={ "/ui/connections/" (path_escape(i)) "/" (path_escape(c)) } { (c) },
                            (_, c) => (c.as_deref().unwrap_or("—")),
                        }
                    }
                    dt { "Script" } dd { (op.script.as_deref().unwrap_or("—")) }
                    dt { "Started" } dd { (time(op.started_at)) }
                    dt { "Ended" } dd { (optional_time(op.ended_at)) }
                    dt { "Duration" } dd { (duration(op.started_at, op.ended_at)) }
                }
                @if let Some(error) = &op.error {
                    h2 { "Error" }
                    pre.error.operation-error { (error) }
                }
            }
            h2 { "Messages" }
            @if messages.is_empty() {
                p.muted { "No messages." }
            } @else {
                table.messages {
                    thead { tr { th { "Time" } th { "Level" } th { "Kind" } th { "Message" } } }
                    tbody {
                        @for m in messages {
                            @let level = serde_json::to_value(m.level).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
                            tr class={ "level-" (level) } {
                                td { (time(m.created_at)) }
                                td { (level) }
                                td { (serde_json::to_value(m.kind).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()) }
                                td.message { (m.message) }
                            }
                        }
                    }
                }
            }
            h2 { "HTTP calls" }
            @if http.is_empty() {
                p.muted { "No HTTP calls." }
            } @else {
                table.http {
                    thead { tr { th { "Time" } th { "Method" } th { "Endpoint" } th { "Status" } th { "Duration" } } }
                    tbody { @for m in &http { (http_row(m)) } }
                }
            }
            h2 { "Result" }
            @for m in &results { (layout::json_block(&m.meta["results"])) }
            @if results.is_empty() && !op.meta.as_object().is_none_or(|m| m.is_empty()) {
                (layout::json_block(&op.meta))
            } @else if results.is_empty() {
                p.muted { "No result recorded." }
            }
        }
    }
}

async fn show(
    State(ctx): State<Context>,
    session: Session,
    Path(id): Path<String>,
) -> WebResult<Markup> {
    let not_found = || {
        WebError::Shared(lasso_services::Error::NotFound {
            code: ErrorCode::UnknownOperation,
            message: format!("no operation `{id}` in this environment"),
        })
    };
    let op_id: Uuid = id.parse().map_err(|_| not_found())?;
    let env = session.environment.id;
    let op = ctx
        .logs
        .operation(env, op_id)
        .await?
        .ok_or_else(not_found)?;
    let messages = ctx.logs.messages(env, op_id).await?;
    let title = format!(
        "{} {}",
        kind_name(op.kind),
        op.script.as_deref().unwrap_or_default()
    );
    Ok(layout::page(
        &session,
        Section::Logs,
        &title,
        html! {
            p { a href="/ui/logs" { "← Logs" } }
            h1 { "Operation " span.mono { (op.id) } }
            (operation_body(&op, &messages))
        },
    ))
}
