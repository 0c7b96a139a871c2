//! The logs API (Lasso's own shape): search operations, list an operation's messages.

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use lasso_services::Context;
use lasso_services::adapters::log_sink::{MAX_PAGE, MessageQuery};
use lasso_services::logs::{OperationKind, OperationQuery, OperationState};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::auth::Env;
use crate::error::{ApiError, ApiResult};
use crate::extract::Query;

pub fn router() -> Router<Context> {
    Router::new()
        .route("/logs/operations", get(search))
        .route("/logs/operations/{id}/messages", get(messages))
}

const DEFAULT_LIMIT: usize = 50;

/// `sync,action` or repeated parameters, each a value of the enum.
fn parse_list<T: DeserializeOwned>(field: &str, value: &str, out: &mut Vec<T>) -> ApiResult<()> {
    for part in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        out.push(
            serde_json::from_value(Value::String(part.to_string()))
                .map_err(|_| ApiError::invalid(field, format!("`{part}` is not a known value")))?,
        );
    }
    Ok(())
}

fn timestamp(field: &str, value: &str) -> ApiResult<DateTime<Utc>> {
    value.parse().map_err(|_| {
        ApiError::invalid(
            field,
            format!("expected an ISO-8601 timestamp, got `{value}`"),
        )
    })
}

async fn search(
    State(ctx): State<Context>,
    Env(env): Env,
    Query(params): Query<Vec<(String, String)>>,
) -> ApiResult<Json<Value>> {
    let mut query = OperationQuery {
        environment_id: env.id,
        limit: DEFAULT_LIMIT,
        ..Default::default()
    };
    let mut kinds: Vec<OperationKind> = Vec::new();
    let mut states: Vec<OperationState> = Vec::new();
    for (key, value) in params {
        match key.as_str() {
            "kind" => parse_list("kind", &value, &mut kinds)?,
            "state" => parse_list("state", &value, &mut states)?,
            "integration" => query.integration = Some(value),
            "connection" => query.connection = Some(value),
            "script" => query.script = Some(value),
            "from" => query.from = Some(timestamp("from", &value)?),
            "to" => query.to = Some(timestamp("to", &value)?),
            "q" if !value.trim().is_empty() => query.text = Some(value),
            "q" => {}
            "cursor" if !value.is_empty() => query.cursor = Some(value),
            "cursor" => {}
            "limit" => query.limit = page_size(&value)?,
            other => return Err(ApiError::invalid(other, "unknown query parameter")),
        }
    }
    query.kinds = kinds;
    query.states = states;
    let page = ctx.logs.search_operations(&query).await?;
    Ok(Json(
        json!({"data": page.items, "next_cursor": page.next_cursor}),
    ))
}

async fn messages(
    State(ctx): State<Context>,
    Env(env): Env,
    Path(id): Path<String>,
    Query(params): Query<Vec<(String, String)>>,
) -> ApiResult<Json<Value>> {
    let id: Uuid = id
        .parse()
        .map_err(|_| ApiError::invalid("id", "not an operation id"))?;
    let mut query = MessageQuery {
        cursor: None,
        limit: MAX_PAGE,
    };
    for (key, value) in params {
        match key.as_str() {
            "cursor" if !value.is_empty() => query.cursor = Some(value),
            "cursor" => {}
            "limit" => query.limit = page_size(&value)?,
            other => return Err(ApiError::invalid(other, "unknown query parameter")),
        }
    }
    let page = ctx.logs.messages_page(env.id, id, &query).await?;
    Ok(Json(
        json!({"data": page.items, "next_cursor": page.next_cursor}),
    ))
}

fn page_size(value: &str) -> ApiResult<usize> {
    value
        .parse()
        .ok()
        .filter(|n| (1..=MAX_PAGE).contains(n))
        .ok_or_else(|| ApiError::invalid("limit", format!("expected 1 to {MAX_PAGE}")))
}
