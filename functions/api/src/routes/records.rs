//! The records read API: `GET /records` and `PATCH /records/prune`.

use axum::extract::State;
use axum::routing::{get, patch};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use lasso_services::records::{self, Action, Cursor, ListQuery, Scope};
use lasso_services::{Context, connections};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::Env;
use crate::connection_headers::ConnectionHeaders;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Body, Query};

pub fn router() -> Router<Context> {
    Router::new()
        .route("/records", get(list))
        .route("/records/", get(list))
        .route("/records/prune", patch(prune))
}

const DEFAULT_LIMIT: i64 = 100;

async fn list(
    State(ctx): State<Context>,
    Env(env): Env,
    headers: ConnectionHeaders,
    Query(params): Query<Vec<(String, String)>>,
) -> ApiResult<Json<Value>> {
    let mut model = None;
    let mut variant = None;
    let mut query = ListQuery {
        limit: DEFAULT_LIMIT,
        ..Default::default()
    };
    for (key, value) in params {
        match key.as_str() {
            "model" => model = Some(value),
            "variant" => variant = Some(value),
            "modified_after" | "delta" => {
                query.modified_after = Some(value.parse::<DateTime<Utc>>().map_err(|_| {
                    ApiError::invalid(
                        key.as_str(),
                        format!("expected an ISO-8601 timestamp, got `{value}`"),
                    )
                })?)
            }
            "limit" => {
                query.limit = value.parse().map_err(|_| {
                    ApiError::invalid("limit", format!("expected a whole number, got `{value}`"))
                })?
            }
            "filter" => {
                for part in value.split(',').filter(|p| !p.trim().is_empty()) {
                    query.filter.push(Action::parse(part)?);
                }
            }
            "cursor" if !value.is_empty() => query.cursor = Some(Cursor::decode(&value)?),
            "cursor" => {}
            "ids" | "ids[]" => query.ids.push(value),
            other => return Err(ApiError::invalid(other, "unknown query parameter")),
        }
    }
    let model = model
        .filter(|m| !m.is_empty())
        .ok_or_else(|| ApiError::invalid("model", "the model query parameter is required"))?;
    let connection = connections::row_id(
        &ctx.db,
        env.id,
        &headers.provider_config_key,
        &headers.connection_id,
    )
    .await?;
    let page = records::list(
        &ctx.db,
        &Scope::new(connection, &model, variant.as_deref()),
        &query,
    )
    .await?;
    Ok(Json(
        json!({"records": page.records, "next_cursor": page.next_cursor}),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PruneBody {
    model: String,
    variant: Option<String>,
    until_cursor: String,
    limit: Option<i64>,
}

async fn prune(
    State(ctx): State<Context>,
    Env(env): Env,
    headers: ConnectionHeaders,
    Body(body): Body<PruneBody>,
) -> ApiResult<Json<Value>> {
    let until = Cursor::decode(&body.until_cursor)
        .map_err(|_| ApiError::invalid("until_cursor", "not a cursor this API handed out"))?;
    let connection = connections::row_id(
        &ctx.db,
        env.id,
        &headers.provider_config_key,
        &headers.connection_id,
    )
    .await?;
    let (count, has_more) = records::prune(
        &ctx.db,
        &Scope::new(connection, &body.model, body.variant.as_deref()),
        &until,
        body.limit.unwrap_or(records::MAX_LIST_LIMIT),
    )
    .await?;
    Ok(Json(json!({"count": count, "has_more": has_more})))
}
