//! Errors of the web pages, answered as an HTML page (the JSON API has its own, `ApiError`).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use lasso_services::Error;
use maud::html;

use super::layout;

#[derive(Debug, thiserror::Error)]
pub enum WebError {
    #[error(transparent)]
    Shared(#[from] Error),
    /// No valid session: the browser is sent to sign in, then back to `next`.
    #[error("not signed in")]
    SignedOut { next: String },
    /// A state-changing request without this session's CSRF token.
    #[error("the form's security token is missing or stale; reload the page and try again")]
    Csrf,
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
}

impl WebError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }

    fn status_and_message(&self) -> (StatusCode, String) {
        match self {
            WebError::SignedOut { .. } => (StatusCode::UNAUTHORIZED, self.to_string()),
            WebError::Csrf => (StatusCode::FORBIDDEN, self.to_string()),
            WebError::Invalid { .. } => (StatusCode::BAD_REQUEST, self.to_string()),
            WebError::Shared(e) => match e {
                Error::NotFound { message, .. } => (StatusCode::NOT_FOUND, message.clone()),
                Error::Invalid { .. } => (StatusCode::BAD_REQUEST, e.to_string()),
                Error::Provider { message, .. } | Error::BadRequest { message, .. } => {
                    (StatusCode::BAD_REQUEST, message.clone())
                }
                Error::Conflict(m) => (StatusCode::CONFLICT, m.clone()),
                Error::Unauthorized(m) => (StatusCode::UNAUTHORIZED, m.clone()),
                Error::Forbidden(m) => (StatusCode::FORBIDDEN, m.clone()),
                Error::PayloadTooLarge(m) => (StatusCode::PAYLOAD_TOO_LARGE, m.clone()),
                _ => {
                    // Our own fault: log the detail, show none of it.
                    tracing::error!(error = %e, "page failed");
                    (
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "an internal error occurred".to_string(),
                    )
                }
            },
        }
    }
}

pub type WebResult<T> = Result<T, WebError>;

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        if let WebError::SignedOut { next } = &self {
            let target = format!("/ui/signin?next={}", layout::query_escape(next));
            return Redirect::to(&target).into_response();
        }
        let (status, message) = self.status_and_message();
        let title = status.canonical_reason().unwrap_or("Error");
        let page = layout::bare(
            title,
            html! {
                main.narrow {
                    h1 { (status.as_u16()) " " (title) }
                    p.error role="alert" { (message) }
                    p { a href="/ui/" { "Back to the dashboard" } }
                }
            },
        );
        (status, page).into_response()
    }
}
