//! The per-process context: clients and pools built once, before the Lambda `run` loop, and
//! shared by every invocation.

use std::sync::Arc;

use sqlx::PgPool;

use crate::Result;
use crate::adapters::log_sink::{BufferedLogSink, OpenSearchLogSink, PostgresLogSink};
use crate::adapters::script_store::{DirScriptStore, S3ScriptStore};
use crate::adapters::transport::RunnerQueues;
use crate::adapters::websocket_api::WebSocketApi;
use crate::adapters::{LogSink, ScriptStore, TaskTransport};
use crate::auth_sockets::AuthSockets;
use crate::config::{Config, LogSinkConfig, OpenSearchAuth, ScriptStoreConfig, TransportConfig};
use crate::crypto::Cipher;
use crate::outbound;
use crate::providers::Catalog;

#[derive(Clone)]
pub struct Context {
    pub config: Arc<Config>,
    pub db: PgPool,
    pub cipher: Cipher,
    pub scripts: Arc<dyn ScriptStore>,
    /// Every runner group's task queue; [`Context::transport`] is this process's own group's.
    pub queues: Arc<RunnerQueues>,
    pub logs: Arc<dyn LogSink>,
    /// The provider catalog: the builtin one, plus `LASSO_PROVIDERS_FILE` when set.
    pub providers: Arc<Catalog>,
    /// Where requests made for tenants may go (`LASSO_OUTBOUND_ALLOW`); every client below, and
    /// any other that sends a tenant's request, is built on it ([`outbound::Client::new`]).
    pub outbound: Arc<outbound::Policy>,
    /// Outgoing HTTP (token endpoints, credential checks, webhooks): one connection pool per
    /// process; follows no redirects.
    pub http: outbound::Client,
    /// Script bundles already fetched, by content hash.
    pub bundles: Arc<crate::scripts::store::BundleCache>,
    /// Calls made through the proxy: no overall timeout, same-origin redirects only.
    pub proxy_http: outbound::Client,
    /// Scripts' `uncontrolledFetch`: any URL and redirect the policy permits.
    pub fetch_http: outbound::Client,
    /// Wakes synchronous action calls when their task finishes (`LASSO_ACTION_WAIT`).
    pub completions: Arc<crate::queue::completions::Completions>,
    /// The frontend SDK's auth sockets (`nango.auth()`): those open in this process, and
    /// API Gateway's WebSocket API's when `LASSO_AUTH_SOCKET_ENDPOINT` is set.
    pub auth_sockets: Arc<AuthSockets>,
}

impl Context {
    /// Builds every client the configuration asks for, loading the AWS SDK configuration from
    /// the environment when an AWS adapter is configured. Nothing connects yet: the pool opens
    /// connections lazily and the AWS clients on first use.
    pub async fn from_config(config: Config) -> Result<Self> {
        let needs_aws = matches!(config.script_store, ScriptStoreConfig::S3 { .. })
            || matches!(config.transport, TransportConfig::Sqs { .. })
            || config.auth_socket.is_some()
            || matches!(
                config.log_sink,
                LogSinkConfig::OpenSearch {
                    auth: OpenSearchAuth::SigV4,
                    ..
                }
            );
        let sdk = if needs_aws {
            Some(crate::adapters::aws_sdk_config().await)
        } else {
            None
        };
        Self::build(config, sdk)
    }

    /// Builds the context with the given AWS SDK configuration (tests pass one pointing at
    /// moto).
    pub fn build(config: Config, sdk: Option<aws_config::SdkConfig>) -> Result<Self> {
        let providers = match &config.providers_file {
            Some(path) => Arc::new(Catalog::load_extra(path)?),
            None => Catalog::builtin(),
        };
        let db = crate::db::pool(&config)?;
        let scripts: Arc<dyn ScriptStore> = match &config.script_store {
            ScriptStoreConfig::S3 { bucket, prefix } => Arc::new(S3ScriptStore::new(
                sdk.as_ref()
                    .ok_or_else(|| crate::Error::Internal("no AWS configuration for S3".into()))?,
                bucket.clone(),
                prefix.clone(),
            )),
            ScriptStoreConfig::Dir(path) => Arc::new(DirScriptStore::new(path.clone())),
        };
        let queues = Arc::new(match &config.transport {
            TransportConfig::Sqs { queues, .. } => RunnerQueues::sqs(
                sdk.as_ref()
                    .ok_or_else(|| crate::Error::Internal("no AWS configuration for SQS".into()))?,
                queues.clone(),
            ),
            TransportConfig::Local => RunnerQueues::local(),
        });
        // Fails early when the own group has no queue (it always has one once configured).
        queues.for_group(&config.runner_group)?;
        let store: Arc<dyn LogSink> = match &config.log_sink {
            LogSinkConfig::Postgres => Arc::new(PostgresLogSink::new(db.clone())),
            LogSinkConfig::OpenSearch {
                url,
                auth,
                index_prefix,
            } => Arc::new(OpenSearchLogSink::new(
                url,
                *auth,
                index_prefix.clone(),
                sdk.as_ref(),
            )?),
        };
        // Requests hand their logs to a buffer written in the background: a slow log store
        // never holds one up (`LASSO_LOG_FLUSH_MS` bounds the wait before a Lambda returns).
        let logs: Arc<dyn LogSink> = Arc::new(BufferedLogSink::new(store));
        let policy = Arc::new(
            outbound::Policy::new(config.outbound_allow.clone())
                .confined_to(config.outbound_only.clone()),
        );
        if !policy.exceptions().is_empty() {
            let listed: Vec<String> = policy.exceptions().iter().map(|n| n.to_string()).collect();
            tracing::info!(
                allow = %listed.join(","),
                "outbound policy: requests for tenants may reach these addresses (LASSO_OUTBOUND_ALLOW)"
            );
        }
        if !config.outbound_only.is_empty() {
            let listed: Vec<String> = config.outbound_only.iter().map(|n| n.to_string()).collect();
            tracing::info!(
                only = %listed.join(","),
                "outbound policy: requests for tenants may reach only these addresses (LASSO_OUTBOUND_ONLY)"
            );
        }
        let http = crate::http::client(policy.clone())?;
        let gateway = match &config.auth_socket {
            Some(socket) => Some((
                db.clone(),
                WebSocketApi::new(
                    sdk.as_ref().ok_or_else(|| {
                        crate::Error::Internal("no AWS configuration for the WebSocket API".into())
                    })?,
                    &socket.endpoint,
                    socket.ack_function.clone(),
                ),
            )),
            None => None,
        };
        Ok(Self {
            auth_sockets: Arc::new(AuthSockets::new(gateway)),
            completions: Arc::new(crate::queue::completions::Completions::new(
                config.action_wait,
                config.database_url.clone(),
            )),
            bundles: Arc::default(),
            http,
            proxy_http: crate::http::proxy_client(policy.clone())?,
            fetch_http: crate::http::fetch_client(policy.clone())?,
            outbound: policy,
            cipher: Cipher::with_previous(&config.encryption_key, &config.previous_encryption_keys),
            config: Arc::new(config),
            db,
            scripts,
            queues,
            logs,
            providers,
        })
    }

    /// Before a Lambda returns (`LASSO_LOG_FLUSH_MS`): waits, at most that long, for the logs
    /// submitted so far; what is left is counted in the process log. No wait otherwise.
    pub async fn flush_logs(&self) {
        if let Some(bound) = self.config.log_flush {
            self.logs.flush(bound).await;
        }
    }

    /// The queue of this process's own runner group: what its runner receives from.
    pub fn transport(&self) -> Arc<dyn TaskTransport> {
        self.queues
            .for_group(&self.config.runner_group)
            .expect("the own group's queue exists from start-up")
    }

    /// This context as a runner of `group` (`lasso dev` runs one runner loop per group), sharing
    /// every client and queue.
    pub fn for_runner_group(&self, group: &str) -> Result<Self> {
        crate::runner_groups::check_name(group)?;
        let mut config = (*self.config).clone();
        config.runner_group = group.to_string();
        self.queues.for_group(group)?;
        Ok(Self {
            config: Arc::new(config),
            ..self.clone()
        })
    }
}
