//! Webhooks from providers: `POST /webhook/:environmentUuid/:providerConfigKey`. No secret key:
//! the URL names the environment; routing is the integration's (see
//! `lasso_services::incoming_webhooks`).

use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode};
use lasso_services::Context;
use lasso_services::incoming_webhooks::{self, MAX_BODY_BYTES};
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouterExt};
use utoipa_axum::routes;

use crate::error::{ApiResult, ErrorBody};
use crate::extract::RawBody;

pub fn router() -> OpenApiRouter<Context> {
    OpenApiRouter::new().routes(routes!(receive).layer(DefaultBodyLimit::max(MAX_BODY_BYTES)))
}

/// 200 with an empty body, as Nango answers, once the work is queued.
///
/// A provider's webhook. No secret key: the URL names the environment; the body is the provider's.
#[utoipa::path(
    post,
    path = "/webhook/{environment_uuid}/{provider_config_key}",
    tag = "webhooks",
    params(("environment_uuid" = String, Path, description = "The environment's UUID"), ("provider_config_key" = String, Path, description = "The integration's unique key")),
    request_body(content = serde_json::Value, content_type = "application/json", description = "The provider's payload, passed on as it is"),
    responses(
        (status = 200, description = "Received and queued; empty body, as Nango answers"),
        (status = "default", description = "An error", body = ErrorBody),
    ),
)]
async fn receive(
    State(ctx): State<Context>,
    Path((environment_uuid, provider_config_key)): Path<(String, String)>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> ApiResult<StatusCode> {
    let received = incoming_webhooks::receive(
        &ctx,
        &environment_uuid,
        &provider_config_key,
        &headers,
        &body,
    )
    .await?;
    tracing::info!(integration = %provider_config_key, "webhook received: {}", received.summary());
    Ok(StatusCode::OK)
}
