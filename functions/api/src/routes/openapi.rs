//! `GET /openapi.json`: the OpenAPI 3.1 document of this API, built from the same registration
//! as the routes (`super::router`), so it cannot drift from them.

use std::sync::LazyLock;

use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use lasso_services::Context;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<Context> {
    OpenApiRouter::new().routes(routes!(document))
}

static DOCUMENT: LazyLock<String> = LazyLock::new(|| {
    super::router()
        .1
        .to_pretty_json()
        .expect("the OpenAPI document serializes")
});

/// The OpenAPI 3.1 document of this API.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "openapi",
    responses(
        (status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json", body = Object),
    ),
)]
async fn document() -> impl IntoResponse {
    ([(CONTENT_TYPE, "application/json")], DOCUMENT.as_str())
}
