mod actions;
mod auth_flows;
pub(crate) mod auth_socket;
mod connect;
mod connections;
mod cors;
mod environment;
mod functions;
mod health;
mod integrations;
mod logs;
mod nango_cli;
mod providers;
mod proxy;
mod records;
mod syncs;
mod webhooks;

use axum::Router;
use axum::http::{StatusCode, Uri};
use lasso_services::Context;

use crate::error::{ApiError, ErrorCode};

pub fn router() -> Router<Context> {
    Router::new()
        .merge(health::router())
        .merge(environment::router())
        .merge(providers::router())
        .merge(integrations::router())
        .merge(logs::router())
        .merge(connections::router())
        .merge(records::router())
        .merge(connect::router())
        .merge(auth_flows::router())
        .merge(proxy::router())
        .merge(functions::router())
        .merge(actions::router())
        .merge(webhooks::router())
        .merge(syncs::router())
        .merge(nango_cli::router())
}

pub async fn not_found(uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        ErrorCode::NotFound,
        format!("no route for {}", uri.path()),
    )
}
