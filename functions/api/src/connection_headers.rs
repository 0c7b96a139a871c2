//! The `Connection-Id` and `Provider-Config-Key` headers that name the connection of
//! connection-scoped calls (records, proxy). Missing ones answer 400 `invalid_headers` naming
//! each, as Nango's server does for these routes.

use axum::extract::FromRequestParts;
use axum::http::HeaderMap;
use axum::http::request::Parts;

use crate::error::{ApiError, ApiResult};

pub struct ConnectionHeaders {
    pub connection_id: String,
    pub provider_config_key: String,
}

/// A header's value as text, trimmed; absent and empty are the same. A value that is not
/// visible ASCII is a 400 naming the header.
pub fn text<'h>(headers: &'h HeaderMap, name: &'static str) -> ApiResult<Option<&'h str>> {
    match headers.get(name) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .map(|s| Some(s.trim()).filter(|s| !s.is_empty()))
            .map_err(|_| ApiError::invalid(name, "must be visible ASCII text")),
    }
}

impl<S: Send + Sync> FromRequestParts<S> for ConnectionHeaders {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        const CONNECTION_ID: &str = "Connection-Id";
        const PROVIDER_CONFIG_KEY: &str = "Provider-Config-Key";
        match (
            text(&parts.headers, CONNECTION_ID)?,
            text(&parts.headers, PROVIDER_CONFIG_KEY)?,
        ) {
            (Some(connection_id), Some(provider_config_key)) => Ok(Self {
                connection_id: connection_id.to_string(),
                provider_config_key: provider_config_key.to_string(),
            }),
            (connection_id, provider_config_key) => Err(ApiError::MissingHeaders(
                [
                    (connection_id.is_none(), CONNECTION_ID),
                    (provider_config_key.is_none(), PROVIDER_CONFIG_KEY),
                ]
                .into_iter()
                .filter_map(|(missing, name)| missing.then_some(name))
                .collect(),
            )),
        }
    }
}
