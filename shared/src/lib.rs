//! Lasso's shared library: everything the four Lambda functions and the CLI have in common.
//! Handlers stay thin; the logic lives here, in plain types.

pub mod actions;
pub mod adapters;
pub mod auth_flows;
pub mod checkpoints;
pub mod config;
pub mod connect_sessions;
pub mod connections;
pub mod context;
pub mod crypto;
pub mod db;
pub mod dispatcher;
pub mod environments;
pub mod error;
pub mod incoming_webhooks;
pub mod integrations;
pub mod logs;
pub mod oauth;
pub mod providers;
pub mod proxy;
pub mod queue;
pub mod records;
pub mod runner;
pub mod runner_groups;
pub mod sandbox;
pub mod scheduler;
pub mod scripts;
pub mod syncs;
pub mod telemetry;
pub mod web_sessions;
pub mod webhooks;

pub use config::Config;
pub use context::Context;
pub use error::{Error, Result};
