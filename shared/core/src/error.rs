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

impl Error {
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

/// The cause an adapter error keeps.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
