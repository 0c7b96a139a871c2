//! Actions: `POST /action/trigger` (waits for the output, or answers at once with `X-Async`)
//! and `GET /action/:id` (an async action's output or state).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::header::LOCATION;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use lasso_services::Context;
use lasso_services::actions::{self, Outcome, Trigger};
use serde::Deserialize;
use serde_json::Value;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::auth::Env;
use crate::connection_headers::{ConnectionHeaders, text};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::Body;

pub fn router() -> OpenApiRouter<Context> {
    OpenApiRouter::new()
        .routes(routes!(trigger))
        .routes(routes!(result))
}

#[derive(Deserialize, ToSchema)]
struct TriggerBody {
    action_name: String,
    /// Absent is null, as in Nango.
    #[serde(default)]
    input: Value,
}

/// `X-Async`, read as Nango reads it (`true`/`false`, `1`/`0`, `yes`/`no`, `on`/`off`).
fn flag(headers: &HeaderMap, name: &'static str) -> ApiResult<bool> {
    match text(headers, name)?.map(str::to_ascii_lowercase).as_deref() {
        None | Some("false" | "0" | "no" | "off") => Ok(false),
        Some("true" | "1" | "yes" | "on") => Ok(true),
        Some(_) => Err(ApiError::invalid(name, "expected true or false")),
    }
}

/// Runs an action: waits for its output, or answers 202 at once with `X-Async: true`.
#[utoipa::path(
    post,
    path = "/action/trigger",
    tag = "actions",
    security(("secret_key" = [])),
    params(("Connection-Id" = String, Header, description = "The connection id"), ("Provider-Config-Key" = String, Header, description = "The integration's unique key"), ("X-Async" = Option<String>, Header, description = "`true` to answer at once"), ("X-Max-Retries" = Option<String>, Header, description = "Retries of a failed run (a whole number)")),
    request_body = TriggerBody,
    responses(
        (status = 200, description = "The action's output, as its script returned it", body = serde_json::Value),
        (status = 202, description = "Still running (or `X-Async`): `{\"id\", \"statusUrl\"}`, with a `Location` header", body = Object),
        (status = "default", description = "An error", body = ErrorBody),
    ),
)]
async fn trigger(
    State(ctx): State<Context>,
    Env(env): Env,
    connection: ConnectionHeaders,
    headers: HeaderMap,
    Body(body): Body<TriggerBody>,
) -> ApiResult<Response> {
    if body.action_name.trim().is_empty() {
        return Err(ApiError::invalid("action_name", "is required"));
    }
    let max_retries = match text(&headers, "X-Max-Retries")? {
        None => 0,
        Some(v) => v.parse().map_err(|_| {
            ApiError::invalid(
                "X-Max-Retries",
                format!("expected a whole number from 0 to {}", actions::MAX_RETRIES),
            )
        })?,
    };
    let outcome = actions::trigger(
        &ctx,
        env.id,
        Trigger {
            integration: connection.provider_config_key,
            connection_id: connection.connection_id,
            action: body.action_name,
            input: body.input,
            max_retries,
            run_async: flag(&headers, "X-Async")?,
        },
    )
    .await?;
    Ok(answer(outcome))
}

/// An asynchronous action's output, or 202 while it runs.
#[utoipa::path(
    get,
    path = "/action/{id}",
    tag = "actions",
    security(("secret_key" = [])),
    params(("id" = String, Path, description = "The action id (a UUID)")),
    responses(
        (status = 200, description = "The action's output, as its script returned it", body = serde_json::Value),
        (status = 202, description = "Still running (or `X-Async`): `{\"id\", \"statusUrl\"}`, with a `Location` header", body = Object),
        (status = "default", description = "An error", body = ErrorBody),
    ),
)]
async fn result(
    State(ctx): State<Context>,
    Env(env): Env,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let id: Uuid = id
        .parse()
        .map_err(|_| ApiError::invalid("id", "an action id is a UUID"))?;
    Ok(answer(actions::result(&ctx, env.id, id).await?))
}

/// The output as it is (200), or Nango's `{id, statusUrl}` with 202 and a `Location` while the
/// action runs.
fn answer(outcome: Outcome) -> Response {
    match outcome {
        Outcome::Done(output) => (StatusCode::OK, Json(output)).into_response(),
        Outcome::Pending(pending) => (
            StatusCode::ACCEPTED,
            [(LOCATION, pending.status_url.clone())],
            Json(pending),
        )
            .into_response(),
    }
}
