//! Secret-key authentication: `Authorization: Bearer <key>` resolves to the key's environment,
//! and every handler that takes [`Env`] is scoped to it.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use lasso_shared::Context;
use lasso_shared::environments::{self, Environment};

use crate::error::ApiError;

/// The environment of the request's secret key.
pub struct Env(pub Environment);

impl FromRequestParts<Context> for Env {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, ctx: &Context) -> Result<Self, Self::Rejection> {
        let header = parts.headers.get(AUTHORIZATION).ok_or_else(|| {
            ApiError::unauthorized("missing Authorization header; expected `Bearer <secret key>`")
        })?;
        let key = header
            .to_str()
            .ok()
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .ok_or_else(|| {
                ApiError::unauthorized(
                    "malformed Authorization header; expected `Bearer <secret key>`",
                )
            })?;
        environments::find_by_secret_key(&ctx.db, key)
            .await?
            .map(Env)
            .ok_or_else(|| ApiError::unauthorized("unknown secret key"))
    }
}
