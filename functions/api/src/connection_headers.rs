//! The `Connection-Id` and `Provider-Config-Key` headers that name the connection of
//! connection-scoped calls (records, proxy, actions).

use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::request::Parts;

use crate::error::ApiError;

pub struct ConnectionHeaders {
    pub connection_id: String,
    pub provider_config_key: String,
}

fn header(parts: &Parts, name: &'static str) -> Result<String, ApiError> {
    parts
        .headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_string)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "missing_headers",
                format!("the {name} header is required"),
            )
        })
}

impl<S: Send + Sync> FromRequestParts<S> for ConnectionHeaders {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self {
            connection_id: header(parts, "Connection-Id")?,
            provider_config_key: header(parts, "Provider-Config-Key")?,
        })
    }
}
