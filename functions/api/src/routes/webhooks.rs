//! Webhooks from providers: `POST /webhook/:environmentUuid/:providerConfigKey`. No secret key:
//! the URL names the environment; routing is the integration's (see
//! `lasso_services::incoming_webhooks`).

use axum::Router;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use lasso_services::Context;
use lasso_services::incoming_webhooks::{self, MAX_BODY_BYTES};

use crate::error::ApiResult;
use crate::extract::RawBody;

pub fn router() -> Router<Context> {
    Router::new().route(
        "/webhook/{environment_uuid}/{provider_config_key}",
        post(receive).layer(DefaultBodyLimit::max(MAX_BODY_BYTES)),
    )
}

/// 200 with an empty body, as Nango answers, once the work is queued.
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
