//! The styles and script of the web pages, embedded in the binary (no CDN, no build step).

use axum::Router;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::IntoResponse;
use axum::routing::get;

pub const CSS: &str = include_str!("assets/app.css");
pub const JS: &str = include_str!("assets/app.js");
/// The hosted Connect UI's script: the SDK's postMessage protocol, views, the OAuth popup.
pub const CONNECT_JS: &str = include_str!("assets/connect.js");

fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (CONTENT_TYPE, content_type),
            (CACHE_CONTROL, "public, max-age=300"),
        ],
        body,
    )
}

/// A script of one UI, served like the shared ones.
pub fn script(body: &'static str) -> impl IntoResponse {
    asset("text/javascript; charset=utf-8", body)
}

/// `{prefix}/assets/app.css` and `{prefix}/assets/app.js`, for a UI mounted at `prefix`.
pub fn router<S: Clone + Send + Sync + 'static>(prefix: &str) -> Router<S> {
    Router::new()
        .route(
            &format!("{prefix}/assets/app.css"),
            get(|| async { asset("text/css; charset=utf-8", CSS) }),
        )
        .route(
            &format!("{prefix}/assets/app.js"),
            get(|| async { asset("text/javascript; charset=utf-8", JS) }),
        )
}
