//! The api's one error type, and the one place errors become the contract's JSON:
//! `{"error": {"code": "...", "message": "...", "errors": [...]}}`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use lasso_services::Error;
pub use lasso_services::ErrorCode;
use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::{RefOr, schema::SchemaType};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Shared(#[from] Error),
    /// Required request headers that are missing, each named (Nango's `invalid_headers`).
    #[error("missing required header(s): {}", .0.join(", "))]
    MissingHeaders(Vec<&'static str>),
    #[error("{message}")]
    Custom {
        status: StatusCode,
        code: ErrorCode,
        message: String,
    },
}

impl ApiError {
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        Self::Custom {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized, message)
    }

    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Shared(Error::invalid(field, message))
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

/// Every error answer of the API (the OpenAPI document's `ErrorBody`).
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    #[schema(schema_with = error_code_schema)]
    pub code: ErrorCode,
    pub message: String,
    /// What was wrong, item by item: `{"field", "message"}` for bad input, the diagnostics of a
    /// failed compilation.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Object>>)]
    pub errors: Option<serde_json::Value>,
    /// What a failed action threw (`action_script_runtime_error`, `action_script_failure`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub payload: Option<serde_json::Value>,
}

/// `ErrorCode` as a string enum of every code ([`ErrorCode::ALL`]), so the document lists
/// exactly the codes the server can answer with.
fn error_code_schema() -> impl Into<RefOr<Schema>> {
    ObjectBuilder::new()
        .schema_type(SchemaType::new(Type::String))
        .enum_values(Some(ErrorCode::ALL.iter().map(|c| c.as_str())))
}

fn body(code: ErrorCode, message: &str, errors: Option<serde_json::Value>) -> ErrorBody {
    ErrorBody {
        error: ErrorDetail {
            code,
            message: message.to_string(),
            errors,
            payload: None,
        },
    }
}

fn with_payload(mut body: ErrorBody, payload: &serde_json::Value) -> ErrorBody {
    body.error.payload = Some(payload.clone());
    body
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, payload) = match self {
            ApiError::Custom {
                status,
                code,
                message,
            } => (status, body(code, &message, None)),
            ApiError::MissingHeaders(ref names) => (
                StatusCode::BAD_REQUEST,
                body(
                    ErrorCode::InvalidHeaders,
                    &self.to_string(),
                    Some(json!(
                        names
                            .iter()
                            .map(|name| json!({"field": name, "message": "is required"}))
                            .collect::<Vec<_>>()
                    )),
                ),
            ),
            ApiError::Shared(e) => match &e {
                Error::NotFound { code, message } => {
                    (StatusCode::NOT_FOUND, body(*code, message, None))
                }
                Error::Invalid { field, message } => (
                    StatusCode::BAD_REQUEST,
                    body(
                        ErrorCode::InvalidRequest,
                        &e.to_string(),
                        Some(json!([{ "field": field, "message": message }])),
                    ),
                ),
                Error::Provider { code, message } => {
                    (StatusCode::BAD_REQUEST, body(*code, message, None))
                }
                Error::Unreachable { code, message } => {
                    (StatusCode::BAD_GATEWAY, body(*code, message, None))
                }
                // Nango's shape for failed actions: the payload rides in the error. Neither is
                // our fault, so neither is a 5xx (unlike Nango's 500): an ActionError is the
                // script refusing the call, any other failure is its script failing.
                Error::ActionError { payload } => (
                    StatusCode::BAD_REQUEST,
                    with_payload(
                        body(
                            ErrorCode::ActionScriptRuntimeError,
                            "the action failed with an ActionError",
                            None,
                        ),
                        payload,
                    ),
                ),
                Error::ScriptFailed {
                    code,
                    message,
                    payload,
                } => (
                    StatusCode::FAILED_DEPENDENCY,
                    with_payload(body(*code, message, None), payload),
                ),
                Error::PayloadTooLarge(m) => (
                    StatusCode::PAYLOAD_TOO_LARGE,
                    body(ErrorCode::PayloadTooLarge, m, None),
                ),
                Error::Compile(diagnostics) => (
                    StatusCode::BAD_REQUEST,
                    body(
                        ErrorCode::CompilationError,
                        &e.to_string(),
                        Some(json!(diagnostics)),
                    ),
                ),
                Error::Conflict(m) => (StatusCode::CONFLICT, body(ErrorCode::Conflict, m, None)),
                Error::Unauthorized(m) => (
                    StatusCode::UNAUTHORIZED,
                    body(ErrorCode::Unauthorized, m, None),
                ),
                Error::Forbidden(m) => (StatusCode::FORBIDDEN, body(ErrorCode::Forbidden, m, None)),
                Error::BadRequest { code, message } => {
                    (StatusCode::BAD_REQUEST, body(*code, message, None))
                }
                _ => {
                    // Our own fault: log the detail, answer without it (no SQL, no internals).
                    tracing::error!(error = %e, "request failed");
                    (
                        StatusCode::INTERNAL_SERVER_ERROR,
                        body(ErrorCode::ServerError, "an internal error occurred", None),
                    )
                }
            },
        };
        (status, Json(payload)).into_response()
    }
}
