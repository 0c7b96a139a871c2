//! CORS for the endpoints a browser calls with a connect session token (the frontend SDK's
//! `nango.auth()` for API key, basic and client-credentials connections, and the session
//! lookup): any origin may call them, since the token, not the origin, is what authorizes;
//! preflights are answered; no cookies are ever accepted or exposed (no credentials mode).

use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::{HeaderName, Method};
use tower_http::cors::{Any, CorsLayer};

pub fn session_token_endpoints() -> CorsLayer {
    CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([Method::GET, Method::POST, Method::DELETE])
        .allow_headers([
            CONTENT_TYPE,
            AUTHORIZATION,
            HeaderName::from_static("x-request-id"),
        ])
        .expose_headers([HeaderName::from_static("x-request-id")])
        .max_age(std::time::Duration::from_secs(600))
}
