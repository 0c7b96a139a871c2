//! The row ids the layers pass around, each its own type so that an environment's id cannot be
//! handed where a connection's is expected. In Postgres and in JSON they are the plain
//! `bigint` they wrap.

use std::fmt;

use serde::{Deserialize, Serialize};

macro_rules! ids {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {$(
        $(#[$doc])*
        #[derive(
            Debug, Default, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize,
            Deserialize, sqlx::Type,
        )]
        #[serde(transparent)]
        #[sqlx(transparent)]
        pub struct $name(pub i64);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    )*};
}

ids! {
    /// `environments.id`.
    EnvironmentId,
    /// `integrations.id` (not the `unique_key` customers name an integration by).
    IntegrationId,
    /// `connections.id`, the row id other tables refer to (fields named `connection`); not the
    /// `connection_id` string customers name a connection by.
    ConnectionRowId,
}
