//! The one error type of the shared layer. The api maps it to the contract's JSON errors in one
//! place (`functions/api/src/error.rs`); messages never carry secrets or SQL.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `code` is the API error code (`not_found`, `unknown_provider_config`, ...).
    #[error("{message}")]
    NotFound { code: &'static str, message: String },
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
    BadRequest { code: &'static str, message: String },
    /// The external provider refused or failed a request we made for the user (token exchange,
    /// refresh). `code` is the API error code.
    #[error("{message}")]
    Provider { code: &'static str, message: String },
    /// The external provider could not be reached (connection refused, DNS, timeout).
    #[error("{message}")]
    Unreachable { code: &'static str, message: String },
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
        code: &'static str,
        message: String,
        payload: serde_json::Value,
    },
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    #[error("script store: {0}")]
    ScriptStore(String),
    #[error("task transport: {0}")]
    Transport(String),
    #[error("log sink: {0}")]
    LogSink(String),
    #[error("could not decrypt a stored secret (wrong LASSO_ENCRYPTION_KEY?)")]
    Decrypt,
    /// A script project did not compile; every problem, each naming file, line and column.
    #[error("the project has {} problem(s); the first: {}", .0.len(), .0.first().map(ToString::to_string).unwrap_or_default())]
    Compile(Vec<crate::scripts::Diagnostic>),
    #[error("{0}")]
    Internal(String),
}

impl Error {
    /// A destination the outbound policy refuses: the caller's (or the catalog's) choice, so a
    /// 400 that says how an operator can allow it.
    pub fn outbound_refused(refused: &crate::outbound::Refused) -> Self {
        Error::BadRequest {
            code: "outbound_refused",
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
            code: "not_found",
            message: format!("{what} was not found"),
        }
    }

    pub fn unknown_integration(unique_key: &str) -> Self {
        Self::NotFound {
            code: "unknown_provider_config",
            message: format!("integration `{unique_key}` does not exist in this environment"),
        }
    }

    pub fn unknown_provider(name: &str) -> Self {
        Self::NotFound {
            code: "unknown_provider",
            message: format!("provider `{name}` is not in the catalog"),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
