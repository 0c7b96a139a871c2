//! Lasso's integration tests, one binary: each module is one area, run against the real
//! services `scripts/services` starts (Postgres, moto, Elasticsearch). Run one area with
//! `cargo test -p lasso-tests --test integration proxy::`.

mod actions;
mod adapters;
mod api_basics;
mod auth_credentials;
mod auth_oauth2;
mod auth_socket_gateway;
mod config_secrets;
mod connect_sessions;
mod connect_ui;
mod control_plane;
mod credential_hosts;
mod dashboard;
mod deletions;
mod deploy;
mod dispatch;
mod emulate;
mod faults;
mod frontend_sdk;
mod incoming_webhooks;
mod infra;
mod key_rotation;
mod log_store;
mod logs;
mod nango_cli;
mod nango_client;
mod oauth_binding;
mod openapi_fuzz;
mod outbound_policy;
mod outcomes;
mod providers;
mod proxy;
mod records;
mod refresh;
mod refresh_pool;
mod runner_groups;
mod runner_limits;
mod runner_sqs;
mod schedules;
mod sdk;
mod skeleton;
mod sync_scripts;
mod webhook_signatures;
mod webhooks;
mod zero_yaml;
