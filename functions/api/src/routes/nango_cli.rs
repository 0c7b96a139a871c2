//! What Nango's `nango` CLI calls besides the public API: its deploy protocol
//! (`POST /sync/deploy/confirmation`, `POST /sync/deploy`) and its telemetry
//! (`POST /cli/telemetry`, accepted and dropped). The singular `/connection/*` routes
//! `nango dryrun` reads live with the other connection routes.

use axum::Json;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use lasso_services::Context;
use lasso_services::scripts::nango_deploy::{self, Confirmation, DeployedSync, NangoDeployBody};

use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouterExt};
use utoipa_axum::routes;

use crate::auth::Env;
use crate::error::{ApiResult, ErrorBody};
use crate::extract::RawBody;
use crate::routes::functions::{MAX_DEPLOY_BODY_BYTES, parse_json};

pub fn router() -> OpenApiRouter<Context> {
    OpenApiRouter::new()
        .routes(routes!(confirmation).layer(DefaultBodyLimit::max(MAX_DEPLOY_BODY_BYTES)))
        .routes(routes!(deploy).layer(DefaultBodyLimit::max(MAX_DEPLOY_BODY_BYTES)))
        .routes(routes!(telemetry))
}

/// What `nango deploy` would change, for its confirmation prompt.
#[utoipa::path(
    post,
    path = "/sync/deploy/confirmation",
    tag = "nango-cli",
    security(("secret_key" = [])),
    request_body(content = Object, content_type = "application/json", description = "What `nango deploy` sends (`NangoDeployBody`)"),
    responses(
        (status = 200, description = "Nango's deploy confirmation: what would be added, updated and removed", body = Object),
        (status = "default", description = "An error", body = ErrorBody),
    ),
)]
async fn confirmation(
    State(ctx): State<Context>,
    Env(env): Env,
    body: RawBody,
) -> ApiResult<Json<Confirmation>> {
    let body: NangoDeployBody = parse_json(&body.0)?;
    Ok(Json(
        nango_deploy::confirmation(&ctx.db, ctx.scripts.as_ref(), env.id, &body).await?,
    ))
}

/// Deploys what `nango deploy` compiled.
#[utoipa::path(
    post,
    path = "/sync/deploy",
    tag = "nango-cli",
    security(("secret_key" = [])),
    request_body(content = Object, content_type = "application/json", description = "What `nango deploy` sends (`NangoDeployBody`)"),
    responses(
        (status = 200, description = "The deployed syncs and actions, in Nango's shape", body = Vec<Object>),
        (status = "default", description = "An error", body = ErrorBody),
    ),
)]
async fn deploy(
    State(ctx): State<Context>,
    Env(env): Env,
    body: RawBody,
) -> ApiResult<Json<Vec<DeployedSync>>> {
    let body: NangoDeployBody = parse_json(&body.0)?;
    let integration = nango_deploy::to_request(&body)
        .ok()
        .and_then(|(request, _)| request.integration);
    let result = nango_deploy::deploy(&ctx.db, ctx.scripts.as_ref(), env.id, &body).await;
    let log = lasso_services::scripts::deploy::operation_log(
        env.id,
        integration.as_deref(),
        result.as_ref().map(|(outcome, _)| outcome),
    );
    ctx.logs.record(log).await;
    Ok(Json(result?.1))
}

/// The CLI reports usage here, fire-and-forget; Lasso keeps none of it.
#[utoipa::path(
    post,
    path = "/cli/telemetry",
    tag = "nango-cli",
    request_body(content = serde_json::Value, content_type = "application/json", description = "Ignored"),
    responses(
        (status = 204, description = "Accepted and dropped"),
    ),
)]
async fn telemetry() -> StatusCode {
    StatusCode::NO_CONTENT
}
