//! The one error type of the shared layer. The api maps it to the contract's JSON errors in one
//! place (`functions/api/src/error.rs`); messages never carry secrets or SQL.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `what` names the thing, e.g. "integration `github`".
    #[error("{0} was not found")]
    NotFound(String),
    #[error("invalid {field}: {message}")]
    Invalid { field: String, message: String },
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
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
    #[error("{0}")]
    Internal(String),
}

impl Error {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }

    pub fn not_found(what: impl Into<String>) -> Self {
        Self::NotFound(what.into())
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
