//! `GET /providers` and `GET /providers/:provider`: the catalog in Nango's public shape
//! (`GetPublicProviders` / `GetPublicProvider`), each entry with its `name` and `logo_url`.

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use lasso_services::Context;
use lasso_services::providers::Provider;
use serde::{Deserialize, Serialize};

use crate::auth::Env;
use crate::error::ApiResult;

pub fn router() -> Router<Context> {
    Router::new()
        .route("/providers", get(list))
        .route("/providers/{provider}", get(show))
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

#[derive(Deserialize)]
struct ListQuery {
    search: Option<String>,
}

// The entries borrow from the catalog, so the responses are serialized inside the handlers.

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
