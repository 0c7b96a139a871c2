//! The public REST API (Nango-compatible). Handlers are thin: they authenticate, parse, call
//! `lasso_shared`, and shape the answer.

pub mod auth;
pub mod connection_headers;
pub mod error;
pub mod extract;
mod routes;

use axum::Router;
use lasso_shared::Context;

/// The whole API as one router, served by Lambda (`main.rs`) or by `lasso dev`.
pub fn router(ctx: Context) -> Router {
    routes::router()
        .fallback(routes::not_found)
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(ctx)
}
