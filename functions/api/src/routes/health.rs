use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use lasso_services::Context;
use serde_json::{Value, json};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiError, ApiResult, ErrorBody, ErrorCode};

pub fn router() -> OpenApiRouter<Context> {
    OpenApiRouter::new().routes(routes!(health))
}

/// Liveness plus a database round trip, for load balancers and `make dev`.
#[utoipa::path(
    get,
    path = "/health",
    tag = "health",
    responses(
        (status = 200, description = "`{\"status\": \"ok\", \"database\": \"ok\"}`", body = Object),
        (status = "default", description = "An error (503 `database_unavailable`)", body = ErrorBody),
    ),
)]
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
