//! The one error type of the shared layer. The api maps it to the contract's JSON errors in one
//! place (`functions/api/src/error.rs`); messages never carry secrets or SQL.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `code` is the API error code (`not_found`, `unknown_provider_config`, ...).
    #[error("{message}")]
    NotFound { code: ErrorCode, message: String },
    #[error("invalid {field}: {message}")]
    Invalid { field: String, message: String },
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    /// A well-formed request that cannot be done as asked (wrong auth mode for the endpoint, an
    /// integration a connect session does not allow, ...). `code` is the API error code.
    #[error("{message}")]
    BadRequest { code: ErrorCode, message: String },
    /// The external provider refused or failed a request we made for the user (token exchange,
    /// refresh). `code` is the API error code.
    #[error("{message}")]
    Provider { code: ErrorCode, message: String },
    /// The external provider could not be reached (connection refused, DNS, timeout).
    #[error("{message}")]
    Unreachable { code: ErrorCode, message: String },
    #[error("{0}")]
    PayloadTooLarge(String),
    /// An action's script threw `ActionError`; `payload` is what it threw, for the caller.
    #[error("the action failed with an ActionError")]
    ActionError { payload: serde_json::Value },
    /// A function's script failed otherwise (it threw, timed out, ran out of memory, returned
    /// too much) or its task expired. `code` is the API error code; `payload` says what
    /// happened, without stack traces.
    #[error("{message}")]
    ScriptFailed {
        code: ErrorCode,
        message: String,
        payload: serde_json::Value,
    },
    /// Converted through `From`, which notes a lost connection for the pool (see
    /// [`crate::db::note_error`]).
    #[error("database error: {0}")]
    Database(sqlx::Error),
    #[error("database migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    /// An adapter failed; `source` is what it got from below (S3, SQS, the filesystem,
    /// OpenSearch), when there is one.
    #[error("script store: {message}")]
    ScriptStore {
        message: String,
        #[source]
        source: Option<BoxError>,
    },
    #[error("task transport: {message}")]
    Transport {
        message: String,
        #[source]
        source: Option<BoxError>,
    },
    #[error("log sink: {message}")]
    LogSink {
        message: String,
        #[source]
        source: Option<BoxError>,
    },
    /// API Gateway's WebSocket API (posting to a connection) or the invocation that acks one.
    #[error("auth socket: {message}")]
    AuthSocket {
        message: String,
        #[source]
        source: Option<BoxError>,
    },
    #[error("could not decrypt a stored secret (wrong LASSO_ENCRYPTION_KEY?)")]
    Decrypt,
    /// A script project did not compile; every problem, each naming file, line and column.
    #[error("the project has {} problem(s); the first: {}", .0.len(), .0.first().map(ToString::to_string).unwrap_or_default())]
    Compile(Vec<crate::scripts::Diagnostic>),
    #[error("{0}")]
    Internal(String),
}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        crate::db::note_error(&e);
        Self::Database(e)
    }
}

impl Error {
    /// Whether doing the same again may succeed: a database that failed, restarted or could
    /// not be reached may come back; data it refuses (SQLSTATE class 22) or a constraint it
    /// enforces (class 23) it will refuse again.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Database(sqlx::Error::Database(db)) => !db
                .code()
                .is_some_and(|code| code.starts_with("22") || code.starts_with("23")),
            Self::Database(_) => true,
            _ => false,
        }
    }

    /// The error's class, for places that report errors by kind rather than by message (the
    /// `errorType` of a Lambda function's failed invocation).
    pub fn class(&self) -> &'static str {
        match self {
            Self::NotFound { .. } => "Lasso.NotFound",
            Self::Invalid { .. } => "Lasso.Invalid",
            Self::Conflict(_) => "Lasso.Conflict",
            Self::Unauthorized(_) => "Lasso.Unauthorized",
            Self::Forbidden(_) => "Lasso.Forbidden",
            Self::BadRequest { .. } => "Lasso.BadRequest",
            Self::Provider { .. } => "Lasso.Provider",
            Self::Unreachable { .. } => "Lasso.Unreachable",
            Self::PayloadTooLarge(_) => "Lasso.PayloadTooLarge",
            Self::ActionError { .. } => "Lasso.ActionError",
            Self::ScriptFailed { .. } => "Lasso.ScriptFailed",
            Self::Database(_) => "Lasso.Database",
            Self::Migration(_) => "Lasso.Migration",
            Self::ScriptStore { .. } => "Lasso.ScriptStore",
            Self::Transport { .. } => "Lasso.Transport",
            Self::LogSink { .. } => "Lasso.LogSink",
            Self::AuthSocket { .. } => "Lasso.AuthSocket",
            Self::Decrypt => "Lasso.Decrypt",
            Self::Compile(_) => "Lasso.Compile",
            Self::Internal(_) => "Lasso.Internal",
        }
    }

    pub fn script_store(message: impl Into<String>) -> Self {
        Self::ScriptStore {
            message: message.into(),
            source: None,
        }
    }

    pub fn transport(message: impl Into<String>) -> Self {
        Self::Transport {
            message: message.into(),
            source: None,
        }
    }

    pub fn log_sink(message: impl Into<String>) -> Self {
        Self::LogSink {
            message: message.into(),
            source: None,
        }
    }

    /// A destination the outbound policy refuses: the caller's (or the catalog's) choice, so a
    /// 400 that says how an operator can allow it.
    pub fn outbound_refused(refused: &crate::outbound::Refused) -> Self {
        Error::BadRequest {
            code: ErrorCode::OutboundRefused,
            message: refused.to_string(),
        }
    }

    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }

    /// `what` names the thing, e.g. "connection `abc`".
    pub fn not_found(what: impl std::fmt::Display) -> Self {
        Self::NotFound {
            code: ErrorCode::NotFound,
            message: format!("{what} was not found"),
        }
    }

    pub fn unknown_integration(unique_key: &str) -> Self {
        Self::NotFound {
            code: ErrorCode::UnknownProviderConfig,
            message: format!("integration `{unique_key}` does not exist in this environment"),
        }
    }

    pub fn unknown_provider(name: &str) -> Self {
        Self::NotFound {
            code: ErrorCode::UnknownProvider,
            message: format!("provider `{name}` is not in the catalog"),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Declares [`ErrorCode`] from one list of `Variant = "wire_code"` pairs.
macro_rules! error_codes {
    ($($variant:ident = $code:literal,)*) => {
        /// Every error code the API answers with, in one list. Nango's clients match on these
        /// strings, so each is Nango's where Nango has one.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $($variant,)*
        }

        impl ErrorCode {
            pub const ALL: &[ErrorCode] = &[$(ErrorCode::$variant,)*];

            /// The code as it appears in `{"error": {"code": ...}}`.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $code,)*
                }
            }
        }
    };
}

error_codes! {
    NotFound = "not_found",
    UnknownConnection = "unknown_connection",
    UnknownProviderConfig = "unknown_provider_config",
    UnknownProvider = "unknown_provider",
    UnknownEnvironment = "unknown_environment",
    UnknownSync = "unknown_sync",
    UnknownOperation = "unknown_operation",
    NoSyncsFound = "no_syncs_found",
    InvalidRequest = "invalid_request",
    InvalidHeaders = "invalid_headers",
    InvalidBody = "invalid_body",
    InvalidQueryParams = "invalid_query_params",
    MissingProviderConfigKey = "missing_provider_config_key",
    MethodNotAllowed = "method_not_allowed",
    Unauthorized = "unauthorized",
    Forbidden = "forbidden",
    Conflict = "conflict",
    PayloadTooLarge = "payload_too_large",
    IntegrationNotAllowed = "integration_not_allowed",
    InvalidAuthMode = "invalid_auth_mode",
    InvalidProviderConfig = "invalid_provider_config",
    MissingClientCredentials = "missing_client_credentials",
    InvalidState = "invalid_state",
    InvalidCallback = "invalid_callback",
    AuthorizationRefused = "authorization_refused",
    ConnectionTestFailed = "connection_test_failed",
    ProviderTokenError = "provider_token_error",
    ProviderUnreachable = "provider_unreachable",
    RefreshFailed = "refresh_failed",
    ProxyUpstreamUnreachable = "proxy_upstream_unreachable",
    OutboundRefused = "outbound_refused",
    CompilationError = "compilation_error",
    ActionScriptRuntimeError = "action_script_runtime_error",
    ActionScriptFailure = "action_script_failure",
    ActionOutputTooLarge = "action_output_too_large",
    ActionExpired = "action_expired",
    ActionCancelled = "action_cancelled",
    ActionTimeout = "action_timeout",
    DatabaseUnavailable = "database_unavailable",
    ServerError = "server_error",
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for ErrorCode {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// The cause an adapter error keeps.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[cfg(test)]
mod tests {
    use super::ErrorCode;

    #[test]
    fn error_codes_are_distinct_snake_case_words() {
        let mut seen = std::collections::HashSet::new();
        for code in ErrorCode::ALL {
            let text = code.as_str();
            assert!(seen.insert(text), "`{text}` is listed twice");
            assert!(
                !text.is_empty()
                    && text
                        .split('_')
                        .all(|w| !w.is_empty() && w.bytes().all(|b| b.is_ascii_lowercase())),
                "`{text}` is not snake_case"
            );
        }
    }
}
