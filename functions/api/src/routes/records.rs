//! The records read API: `GET /records` and `PATCH /records/prune`.

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use lasso_services::records::{self, Action, Cursor, ListQuery, Scope};
use lasso_services::{Context, connections};
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Env;
use crate::connection_headers::ConnectionHeaders;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{Body, Query};

pub fn router() -> OpenApiRouter<Context> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(list_with_slash))
        .routes(routes!(prune))
}

const DEFAULT_LIMIT: i64 = 100;

/// A page of a connection's records of one model.
#[utoipa::path(
    get,
    path = "/records",
    tag = "records",
    security(("secret_key" = [])),
    params(("Connection-Id" = String, Header, description = "The connection id"), ("Provider-Config-Key" = String, Header, description = "The integration's unique key"), ("model" = String, Query, description = "The model (required)"), ("variant" = Option<String>, Query), ("modified_after" = Option<String>, Query, description = "ISO-8601 timestamp"), ("delta" = Option<String>, Query, description = "Same as `modified_after` (deprecated by Nango)"), ("limit" = Option<i64>, Query, description = "Page size (default 100)"), ("filter" = Option<String>, Query, description = "`added`, `updated`, `deleted`, comma-separated"), ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page"), ("ids" = Option<Vec<String>>, Query, description = "Only these record ids")),
    responses(
        (status = 200, description = "`{\"records\": [record], \"next_cursor\": string|null}`; each record carries `_nango_metadata`", body = Object),
        (status = "default", description = "An error", body = ErrorBody),
    ),
)]
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

/// `GET /records` with a trailing slash, as some of Nango's clients send it.
#[utoipa::path(
    get,
    path = "/records/",
    tag = "records",
    security(("secret_key" = [])),
    params(("Connection-Id" = String, Header, description = "The connection id"), ("Provider-Config-Key" = String, Header, description = "The integration's unique key"), ("model" = String, Query, description = "The model (required)"), ("variant" = Option<String>, Query), ("modified_after" = Option<String>, Query, description = "ISO-8601 timestamp"), ("delta" = Option<String>, Query, description = "Same as `modified_after` (deprecated by Nango)"), ("limit" = Option<i64>, Query, description = "Page size (default 100)"), ("filter" = Option<String>, Query, description = "`added`, `updated`, `deleted`, comma-separated"), ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page"), ("ids" = Option<Vec<String>>, Query, description = "Only these record ids")),
    responses(
        (status = 200, description = "`{\"records\": [record], \"next_cursor\": string|null}`; each record carries `_nango_metadata`", body = Object),
        (status = "default", description = "An error", body = ErrorBody),
    ),
)]
async fn list_with_slash(
    ctx: State<Context>,
    env: Env,
    headers: ConnectionHeaders,
    params: Query<Vec<(String, String)>>,
) -> ApiResult<Json<Value>> {
    list(ctx, env, headers, params).await
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct PruneBody {
    model: String,
    variant: Option<String>,
    until_cursor: String,
    limit: Option<i64>,
}

/// Deletes the payloads of records up to a cursor.
#[utoipa::path(
    patch,
    path = "/records/prune",
    tag = "records",
    security(("secret_key" = [])),
    params(("Connection-Id" = String, Header, description = "The connection id"), ("Provider-Config-Key" = String, Header, description = "The integration's unique key")),
    request_body = PruneBody,
    responses(
        (status = 200, description = "`{\"count\": n, \"has_more\": bool}`", body = Object),
        (status = "default", description = "An error", body = ErrorBody),
    ),
)]
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
