//! What Nango's `nango` CLI calls besides the public API: its deploy protocol
//! (`POST /sync/deploy/confirmation`, `POST /sync/deploy`) and its telemetry
//! (`POST /cli/telemetry`, accepted and dropped). The singular `/connection/*` routes
//! `nango dryrun` reads live with the other connection routes.

use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use lasso_services::Context;
use lasso_services::scripts::nango_deploy::{self, Confirmation, DeployedSync, NangoDeployBody};

use crate::auth::Env;
use crate::error::ApiResult;
use crate::extract::RawBody;
use crate::routes::functions::{MAX_DEPLOY_BODY_BYTES, parse_json};

pub fn router() -> Router<Context> {
    Router::new()
        .route(
            "/sync/deploy/confirmation",
            post(confirmation).layer(DefaultBodyLimit::max(MAX_DEPLOY_BODY_BYTES)),
        )
        .route(
            "/sync/deploy",
            post(deploy).layer(DefaultBodyLimit::max(MAX_DEPLOY_BODY_BYTES)),
        )
        .route("/cli/telemetry", post(telemetry))
}

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
async fn telemetry() -> StatusCode {
    StatusCode::NO_CONTENT
}
