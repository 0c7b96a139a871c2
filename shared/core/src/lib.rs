//! Lasso's bottom layer: the types every other crate speaks, settings, errors, crypto, the
//! stores and the adapters to the outside world.
//!
//! The rule of the layers, which Cargo enforces between crates: stores take a pool or an
//! executor, never the service `Context`; a crate imports only the crates below it
//! (`lasso-core` ← `lasso-sandbox` ← `lasso-compile`; `lasso-core` ← `lasso-services` ← the
//! functions and the CLI), so nothing here knows about a flow, a sandbox or a compiler.

pub mod adapters;
pub mod auth_socket_connections;
pub mod checkpoints;
pub mod config;
pub mod connect_sessions;
pub mod connections;
pub mod crypto;
pub mod db;
pub mod environments;
pub mod error;
pub mod http;
pub mod ids;
pub mod integrations;
pub mod logs;
pub mod outbound;
pub mod providers;
pub mod queue;
pub mod records;
pub mod runner_groups;
pub mod script_locks;
pub mod scripts;
pub mod telemetry;
pub mod web_sessions;

pub use config::Config;
pub use error::{Error, ErrorCode, Result};
pub use ids::{ConnectionRowId, EnvironmentId, IntegrationId};
