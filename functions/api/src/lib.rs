//! The public REST API (Nango-compatible). Handlers are thin: they authenticate, parse, call
//! `lasso_shared`, and shape the answer.

pub mod auth;
pub mod connection_headers;
pub mod error;
pub mod extract;
mod routes;

use axum::Router;
use axum::extract::Request;
use lasso_shared::Context;
use tower_http::trace::TraceLayer;

/// The whole API as one router, served by Lambda (`main.rs`) or by `lasso dev`.
pub fn router(ctx: Context) -> Router {
    routes::router()
        .fallback(routes::not_found)
        .layer(TraceLayer::new_for_http().make_span_with(request_span))
        .with_state(ctx)
}

/// The span of one request: method and path, never the query string, which can carry secrets
/// (`connect_session_token`, the OAuth callback's `code` and `state`).
fn request_span(request: &Request) -> tracing::Span {
    tracing::debug_span!(
        "request",
        method = %request.method(),
        path = request.uri().path(),
        version = ?request.version(),
    )
}
