//! The logs API (Lasso's own shape): search operations, list an operation's messages.

use axum::Json;
use axum::extract::{Path, State};
use chrono::{DateTime, Utc};
use lasso_services::Context;
use lasso_services::adapters::log_sink::{MAX_PAGE, MessageQuery};
use lasso_services::logs::{OperationKind, OperationQuery, OperationState};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::auth::Env;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::Query;

pub fn router() -> OpenApiRouter<Context> {
    OpenApiRouter::new()
        .routes(routes!(search))
        .routes(routes!(messages))
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

/// Searches the environment's operations (syncs, actions, webhooks, auth, proxy), newest first.
#[utoipa::path(
    get,
    path = "/logs/operations",
    tag = "logs",
    security(("secret_key" = [])),
    params(("kind" = Option<String>, Query, description = "Operation kinds, comma-separated"), ("state" = Option<String>, Query, description = "Operation states, comma-separated"), ("integration" = Option<String>, Query), ("connection" = Option<String>, Query), ("script" = Option<String>, Query), ("from" = Option<String>, Query, description = "RFC 3339 timestamp"), ("to" = Option<String>, Query, description = "RFC 3339 timestamp"), ("q" = Option<String>, Query, description = "Free text"), ("cursor" = Option<String>, Query), ("limit" = Option<i64>, Query, description = "Page size (default 50)")),
    responses(
        (status = 200, description = "`{\"data\": [operation], \"next_cursor\": string|null}`", body = Object),
        (status = "default", description = "An error", body = ErrorBody),
    ),
)]
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

/// The messages of one operation, oldest first.
#[utoipa::path(
    get,
    path = "/logs/operations/{id}/messages",
    tag = "logs",
    security(("secret_key" = [])),
    params(("id" = String, Path, description = "The operation id (a UUID)"), ("cursor" = Option<String>, Query), ("limit" = Option<i64>, Query)),
    responses(
        (status = 200, description = "`{\"data\": [message], \"next_cursor\": string|null}`", body = Object),
        (status = "default", description = "An error", body = ErrorBody),
    ),
)]
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
