use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use lasso_shared::Context;
use lasso_shared::environments::{self, EnvironmentVariable};

use crate::auth::Env;
use crate::error::ApiResult;

pub fn router() -> Router<Context> {
    Router::new().route("/environment-variables", get(list_variables))
}

async fn list_variables(
    State(ctx): State<Context>,
    Env(env): Env,
) -> ApiResult<Json<Vec<EnvironmentVariable>>> {
    Ok(Json(
        environments::variables(&ctx.db, &ctx.cipher, env.id).await?,
    ))
}
