//! The public REST API (Nango-compatible). Handlers are thin: they authenticate, parse, call
//! `lasso_services`, and shape the answer.

pub mod auth;
pub mod connection_headers;
pub mod error;
pub mod extract;
pub mod lambda;
mod routes;
// The dashboard's and the Connect UI's HTML pages and assets: routes of their own, left out of
// the OpenAPI document (functions/api/clippy.toml).
#[allow(clippy::disallowed_methods)]
pub mod web;

use axum::Router;
use axum::extract::Request;
use axum::http::HeaderName;
use lasso_services::Context;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

/// Every answer carries it, and every log line of the request; a caller's own id is kept.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The whole API as one router, served by Lambda (`main.rs`) or by `lasso dev`.
pub fn router(ctx: Context) -> Router {
    let flushing = ctx.clone();
    routes::router()
        .0
        .merge(web::ui::router())
        .merge(web::connect_ui::router())
        .fallback(routes::not_found)
        // On Lambda, the request's logs are flushed (for a bounded time) before it returns.
        .layer(axum::middleware::from_fn(
            move |request: Request, next: axum::middleware::Next| {
                let ctx = flushing.clone();
                async move {
                    let response = next.run(request).await;
                    ctx.flush_logs().await;
                    response
                }
            },
        ))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(TraceLayer::new_for_http().make_span_with(request_span))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
        .with_state(ctx)
}

/// The OpenAPI 3.1 document of [`router`]'s API routes (served at `GET /openapi.json`).
pub fn openapi() -> utoipa::openapi::OpenApi {
    routes::router().1
}

/// The span of one request: its id, method and path, never the query string, which can carry
/// secrets (`connect_session_token`, the OAuth callback's `code` and `state`).
fn request_span(request: &Request) -> tracing::Span {
    let request_id = request
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    tracing::info_span!(
        "request",
        request_id,
        method = %request.method(),
        path = request.uri().path(),
    )
}
