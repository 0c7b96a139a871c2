use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use lasso_services::Context;
use serde_json::{Value, json};

use crate::error::{ApiError, ApiResult, ErrorCode};

pub fn router() -> Router<Context> {
    Router::new().route("/health", get(health))
}

/// Liveness plus a database round trip, for load balancers and `make dev`.
async fn health(State(ctx): State<Context>) -> ApiResult<Json<Value>> {
    lasso_services::db::ping(&ctx.db).await.map_err(|e| {
        tracing::error!(error = %e, "health check: database unreachable");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::DatabaseUnavailable,
            "the database is unreachable",
        )
    })?;
    Ok(Json(json!({"status": "ok", "database": "ok"})))
}
