//! Lasso's flows: the per-process [`Context`] and everything that acts on it — actions, syncs,
//! the proxy, the auth flows, token refresh, webhooks in and out, dispatch and scheduling.
//!
//! Services import only downward: from `lasso-core` (re-exported below, so callers and the
//! modules here name one crate) and never from the sandbox or the compiler, which is why the
//! api, the scheduler and the dispatcher link neither QuickJS nor oxc.

pub use lasso_core::{
    Config, ConnectionRowId, EnvironmentId, Error, ErrorCode, IntegrationId, Result, adapters,
    auth_socket_connections, checkpoints, config, connect_sessions, connections, crypto, db,
    environments, error, http, ids, integrations, logs, outbound, providers, queue, records,
    runner_groups, script_locks, scripts, telemetry, web_sessions,
};

pub mod actions;
pub mod auth_flows;
pub mod auth_sockets;
pub mod context;
pub mod dispatcher;
pub mod incoming_webhooks;
pub mod keys;
pub mod oauth;
pub mod proxy;
pub mod refresh;
pub mod scheduler;
pub mod syncs;
pub mod webhooks;

pub use context::Context;
