//! Secret-key authentication: `Authorization: Bearer <key>` resolves to the key's environment,
//! and every handler that takes [`Env`] is scoped to it. The auth endpoints also take a connect
//! session token ([`AuthCaller`], [`SessionToken`]).

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use lasso_services::Context;
use lasso_services::auth_flows::Caller;
use lasso_services::connect_sessions::{self, ConnectSession};
use lasso_services::environments::{self, Environment};

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

/// `Authorization: Bearer <token>`, if the header is there.
fn bearer(parts: &Parts) -> Result<Option<&str>, ApiError> {
    let Some(header) = parts.headers.get(AUTHORIZATION) else {
        return Ok(None);
    };
    header
        .to_str()
        .ok()
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(Some)
        .ok_or_else(|| {
            ApiError::unauthorized("malformed Authorization header; expected `Bearer <token>`")
        })
}

/// The caller of an auth endpoint: a connect session token, in the `connect_session_token`
/// query parameter (as Nango's frontend SDK sends it) or as `Authorization: Bearer
/// nango_connect_session_…`, or else the environment's secret key.
pub struct AuthCaller(pub Caller);

impl FromRequestParts<Context> for AuthCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, ctx: &Context) -> Result<Self, Self::Rejection> {
        let query = axum::extract::Query::<Vec<(String, String)>>::try_from_uri(&parts.uri)
            .map(|q| q.0)
            .unwrap_or_default();
        let param = |name: &str| {
            query
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        let session = async |token: &str| {
            let session = connect_sessions::authenticate(&ctx.db, token).await?;
            Ok(AuthCaller(Caller::ConnectSession(Box::new(session))))
        };
        if let Some(token) = param("connect_session_token") {
            return session(token).await;
        }
        match bearer(parts)? {
            Some(token) if token.starts_with(connect_sessions::TOKEN_PREFIX) => {
                session(token).await
            }
            Some(key) => environments::find_by_secret_key(&ctx.db, key)
                .await?
                .map(|env| AuthCaller(Caller::SecretKey(env)))
                .ok_or_else(|| ApiError::unauthorized("unknown secret key")),
            None if param("public_key").is_some() => Err(ApiError::unauthorized(
                "public keys are not supported; use a connect session token (POST /connect/sessions)",
            )),
            None => Err(ApiError::unauthorized(
                "missing credentials; expected a `connect_session_token` query parameter or `Authorization: Bearer <secret key>`",
            )),
        }
    }
}

/// The connect session of `Authorization: Bearer <connect session token>` (`GET` and `DELETE
/// /connect/session`).
pub struct SessionToken(pub ConnectSession);

impl FromRequestParts<Context> for SessionToken {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, ctx: &Context) -> Result<Self, Self::Rejection> {
        let token = bearer(parts)?.ok_or_else(|| {
            ApiError::unauthorized(
                "missing Authorization header; expected `Bearer <connect session token>`",
            )
        })?;
        Ok(SessionToken(
            connect_sessions::authenticate(&ctx.db, token).await?,
        ))
    }
}
