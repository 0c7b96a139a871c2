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
mod openapi;
mod providers;
mod proxy;
mod records;
mod syncs;
mod webhooks;

use axum::Router;
use axum::http::{StatusCode, Uri};
use lasso_services::Context;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;

use crate::error::{ApiError, ErrorBody, ErrorCode};

/// Security scheme names, as operations' `security(...)` name them.
pub(crate) const SECRET_KEY: &str = "secret_key";
pub(crate) const CONNECT_SESSION: &str = "connect_session_token";
pub(crate) const CONNECT_SESSION_QUERY: &str = "connect_session_token_query";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Lasso API",
        description = "Lasso's public REST API, compatible with Nango's. Generated from the handlers (utoipa), so it lists every route the API serves except the dashboard's HTML pages (`/ui/...`) and the hosted Connect UI's pages and assets (`/connect-ui/...`). Every error answers `ErrorBody`.",
    ),
    components(schemas(ErrorBody)),
    modifiers(&SecuritySchemes),
)]
struct ApiDoc;

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            SECRET_KEY,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "The environment's secret key: `Authorization: Bearer <secret key>`.",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            CONNECT_SESSION,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("nango_connect_session_…")
                    .description(Some("A connect session token (`POST /connect/sessions`): `Authorization: Bearer nango_connect_session_…`."))
                    .build(),
            ),
        );
        components.add_security_scheme(
            CONNECT_SESSION_QUERY,
            SecurityScheme::ApiKey(ApiKey::Query(ApiKeyValue::with_description(
                "connect_session_token",
                "A connect session token in the query, as Nango's frontend SDK sends it. Nango's older `public_key` query parameter is refused with 401: Lasso has no public keys.",
            ))),
        );
    }
}

/// Every route of the public API, each registered with its OpenAPI operation.
fn openapi_router() -> OpenApiRouter<Context> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(openapi::router())
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

/// The API's routes and their OpenAPI document, from one registration.
pub fn router() -> (Router<Context>, utoipa::openapi::OpenApi) {
    let (router, mut doc) = openapi_router().split_for_parts();
    doc.info.version = env!("CARGO_PKG_VERSION").to_string();
    // axum's catch-all `{*rest}` is OpenAPI's plain `{rest}`.
    let paths = std::mem::take(&mut doc.paths.paths);
    doc.paths.paths = paths
        .into_iter()
        .map(|(path, mut item)| {
            let path = path.replace("{*", "{");
            name_operations(&path, &mut item);
            (path, item)
        })
        .collect();
    (router, doc)
}

/// OpenAPI wants operation ids unique; the handlers' names (`list`, `get_one`) repeat across
/// modules, so each operation is named by its method and path: `get_connections_connection_id`,
/// `get_records_slash` for `GET /records/`.
fn name_operations(path: &str, item: &mut utoipa::openapi::PathItem) {
    let words: Vec<&str> = path
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect();
    let mut tail = words.join("_");
    if path.len() > 1 && path.ends_with('/') {
        tail.push_str("_slash");
    }
    for (method, operation) in [
        ("get", &mut item.get),
        ("put", &mut item.put),
        ("post", &mut item.post),
        ("delete", &mut item.delete),
        ("options", &mut item.options),
        ("head", &mut item.head),
        ("patch", &mut item.patch),
        ("trace", &mut item.trace),
    ] {
        if let Some(operation) = operation {
            operation.operation_id = Some(format!("{method}_{tail}"));
        }
    }
}

pub async fn not_found(uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        ErrorCode::NotFound,
        format!("no route for {}", uri.path()),
    )
}
