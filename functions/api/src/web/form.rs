//! Form posts: the body parsed into the handler's type, after the CSRF token it carries
//! (`_csrf`) is checked against the session's.

use axum::extract::{FromRequest, Request};
use lasso_services::Context;
use serde::de::DeserializeOwned;

use super::{Session, WebError};

/// The largest form body a page accepts.
const MAX_FORM_BYTES: usize = 256 * 1024;

/// A state-changing form post of a signed-in session: rejected unless its `_csrf` field is the
/// session's token. Fields the type does not name are ignored.
pub struct Posted<T>(pub Session, pub T);

impl<T: DeserializeOwned> FromRequest<Context> for Posted<T> {
    type Rejection = WebError;

    async fn from_request(req: Request, ctx: &Context) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = req.into_parts();
        let session = Session::from_parts(&mut parts, ctx).await?;
        let bytes = axum::body::to_bytes(body, MAX_FORM_BYTES)
            .await
            .map_err(|_| WebError::invalid("form", "the form is too large or was cut off"))?;
        let fields: Vec<(String, String)> = serde_urlencoded::from_bytes(&bytes)
            .map_err(|e| WebError::invalid("form", e.to_string()))?;
        let token = fields
            .iter()
            .find(|(k, _)| k == "_csrf")
            .map(|(_, v)| v.as_str());
        if !token.is_some_and(|t| session.csrf_matches(t)) {
            return Err(WebError::Csrf);
        }
        let value = serde_urlencoded::from_bytes(&bytes)
            .map_err(|e| WebError::invalid("form", e.to_string()))?;
        Ok(Posted(session, value))
    }
}

/// An optional form field: empty text counts as absent.
pub fn optional(value: Option<String>) -> Option<String> {
    value
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}
