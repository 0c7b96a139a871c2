//! `GET /providers` and `GET /providers/:provider`: the catalog in Nango's public shape
//! (`GetPublicProviders` / `GetPublicProvider`), each entry with its `name` and `logo_url`.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use lasso_services::Context;
use lasso_services::providers::Provider;
use serde::{Deserialize, Serialize};
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Env;
use crate::error::{ApiResult, ErrorBody};

pub fn router() -> OpenApiRouter<Context> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(show))
}

#[derive(Serialize)]
struct Data<T> {
    data: T,
}

/// A catalog entry as Nango's API serves it.
#[derive(Serialize)]
struct ApiProvider<'a> {
    name: &'a str,
    logo_url: String,
    #[serde(flatten)]
    provider: &'a Provider,
}

impl<'a> ApiProvider<'a> {
    fn new(name: &'a str, provider: &'a Provider) -> Self {
        Self {
            name,
            // Nango's logos are public; Lasso ships none of its own.
            logo_url: lasso_services::providers::logo_url(name),
            provider,
        }
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// Matches provider names and display names; empty matches every provider.
    search: Option<String>,
}

// The entries borrow from the catalog, so the responses are serialized inside the handlers.

/// The provider catalog, `{"data": [provider]}`.
#[utoipa::path(
    get,
    path = "/providers",
    tag = "providers",
    security(("secret_key" = [])),
    params(ListQuery),
    responses(
        (status = 200, description = "`{\"data\": [provider]}`: each entry of Nango's catalog with its `name` and `logo_url`", body = Object),
        (status = "default", description = "An error", body = ErrorBody),
    ),
)]
async fn list(
    State(ctx): State<Context>,
    _env: Env,
    Query(query): Query<ListQuery>,
) -> ApiResult<Response> {
    // An empty search matches every provider.
    let data: Vec<ApiProvider> = ctx
        .providers
        .search(query.search.as_deref().unwrap_or(""))
        .map(|(n, p)| ApiProvider::new(n, p))
        .collect();
    Ok(Json(Data { data }).into_response())
}

/// One provider of the catalog, `{"data": provider}`.
#[utoipa::path(
    get,
    path = "/providers/{provider}",
    tag = "providers",
    security(("secret_key" = [])),
    params(("provider" = String, Path, description = "The provider's name, e.g. `github`")),
    responses(
        (status = 200, description = "`{\"data\": provider}`", body = Object),
        (status = "default", description = "An error", body = ErrorBody),
    ),
)]
async fn show(
    State(ctx): State<Context>,
    _env: Env,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    let provider = ctx.providers.require(&name)?;
    Ok(Json(Data {
        data: ApiProvider::new(&name, provider),
    })
    .into_response())
}
