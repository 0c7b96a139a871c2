//! [`TestApp`]: the setup most integration tests share, built in one place. A fresh database
//! (a copy of the migrated template), a [`Context`] with the test's settings, the api router
//! served on a loopback port that is also `LASSO_PUBLIC_URL`, an environment with its secret
//! key, and optionally integrations, AWS adapters on moto and `lasso dev`'s background workers.
//!
//! ```ignore
//! let app = TestApp::builder()
//!     .providers(&catalog(&mock.url))
//!     .integration("mock", "mock-oauth", "read")
//!     .start()
//!     .await;
//! let (status, body) = app.api.get("/integrations").await;
//! ```

use lasso_cli::workers::Workers;
use lasso_services::Context;
use lasso_services::environments::{self, Environment};

use crate::auth::{create_integration, listen, serve_api_on};
use crate::{Api, TestDb, aws_sdk_config, config, create_bucket, create_queue, fresh_database};

pub struct TestApp {
    pub ctx: Context,
    /// The api's base URL, also its `LASSO_PUBLIC_URL` unless the test set another.
    pub base: String,
    pub env: Environment,
    /// The environment's secret key.
    pub key: String,
    /// The api as the environment (its secret key).
    pub api: Api,
    /// `lasso dev`'s scheduler, dispatcher and runner loops, when the test asked for them.
    pub workers: Option<Workers>,
    settings: Vec<(&'static str, String)>,
    sdk: Option<aws_config::SdkConfig>,
    pub db: TestDb,
}

impl TestApp {
    pub fn builder() -> TestAppBuilder {
        TestAppBuilder {
            settings: Vec::new(),
            environment: "prod".into(),
            integrations: Vec::new(),
            webhook_url: None,
            aws: false,
            sdk: None,
            workers: false,
        }
    }

    /// Another instance on the same database and settings, as a second Lambda instance of a
    /// function would be (it is not served).
    pub fn another_instance(&self) -> Context {
        Context::build(config(&self.db, &self.settings), self.sdk.clone()).expect("test context")
    }

    /// Another environment; returns it and the api as it.
    pub async fn add_environment(&self, name: &str) -> (Environment, Api) {
        let (env, key) = environments::create(&self.ctx.db, name)
            .await
            .expect("create environment");
        (env, Api::new(&self.base, &key))
    }

    /// Integration `unique_key` of `provider` in the environment, with OAuth app
    /// `{unique_key}-client` / `{unique_key}-secret` and `scopes` (comma-separated).
    pub async fn add_integration(&self, unique_key: &str, provider: &str, scopes: &str) {
        create_integration(&self.ctx, self.env.id, unique_key, provider, scopes).await;
    }
}

/// For a test's own `Setup` that holds a [`TestApp`] in its field `app` and more beside it
/// (mock servers, receivers): reads the app's fields through it (`s.base`, `s.ctx`).
#[macro_export]
macro_rules! setup_derefs_to_app {
    ($setup:ty) => {
        impl std::ops::Deref for $setup {
            type Target = $crate::TestApp;
            fn deref(&self) -> &$crate::TestApp {
                &self.app
            }
        }
    };
}

pub struct TestAppBuilder {
    settings: Vec<(&'static str, String)>,
    environment: String,
    integrations: Vec<(String, String, String)>,
    webhook_url: Option<String>,
    aws: bool,
    sdk: Option<aws_config::SdkConfig>,
    workers: bool,
}

impl TestAppBuilder {
    /// A `LASSO_*` setting; a later one of the same name wins.
    pub fn setting(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.settings.retain(|(n, _)| *n != name);
        self.settings.push((name, value.into()));
        self
    }

    /// Several settings at once, as [`TestAppBuilder::setting`].
    pub fn settings(self, settings: &[(&'static str, String)]) -> Self {
        settings
            .iter()
            .fold(self, |b, (name, value)| b.setting(name, value.clone()))
    }

    /// The provider catalog, as YAML (`LASSO_PROVIDERS_FILE`).
    pub fn providers(self, yaml: &str) -> Self {
        let file = crate::providers_file(yaml);
        self.setting("LASSO_PROVIDERS_FILE", file.display().to_string())
    }

    /// The environment's name (`prod` by default).
    pub fn environment(mut self, name: &str) -> Self {
        self.environment = name.into();
        self
    }

    /// An integration to create in the environment, as [`TestApp::add_integration`].
    pub fn integration(mut self, unique_key: &str, provider: &str, scopes: &str) -> Self {
        self.integrations
            .push((unique_key.into(), provider.into(), scopes.into()));
        self
    }

    /// The environment's webhook URL.
    pub fn webhook_url(mut self, url: &str) -> Self {
        self.webhook_url = Some(url.into());
        self
    }

    /// The AWS adapters on moto (an S3 script store and an SQS transport) instead of the local
    /// ones; logs stay in Postgres.
    pub fn aws(mut self) -> Self {
        self.aws = true;
        self
    }

    /// The AWS SDK configuration the context's AWS clients use (moto's with [`Self::aws`]).
    pub fn sdk(mut self, sdk: aws_config::SdkConfig) -> Self {
        self.sdk = Some(sdk);
        self
    }

    /// Runs `lasso dev`'s background workers (scheduler, dispatcher, runners).
    pub fn workers(mut self) -> Self {
        self.workers = true;
        self
    }

    pub async fn start(mut self) -> TestApp {
        let db = fresh_database().await;
        let (listener, base) = listen().await;
        if !self.settings.iter().any(|(n, _)| *n == "LASSO_PUBLIC_URL") {
            self.settings.push(("LASSO_PUBLIC_URL", base.clone()));
        }
        if self.aws {
            let bucket = create_bucket().await;
            let queue_url = create_queue(30).await;
            self = self
                .setting("LASSO_SCRIPT_STORE", format!("s3://{bucket}/scripts"))
                .setting("LASSO_TASK_TRANSPORT", "sqs")
                .setting("LASSO_RUNNER_QUEUE_URL", queue_url);
            self.sdk.get_or_insert_with(aws_sdk_config);
        }
        let ctx =
            Context::build(config(&db, &self.settings), self.sdk.clone()).expect("test context");
        serve_api_on(listener, ctx.clone());
        let (env, key) = environments::create(&ctx.db, &self.environment)
            .await
            .expect("create environment");
        for (unique_key, provider, scopes) in &self.integrations {
            create_integration(&ctx, env.id, unique_key, provider, scopes).await;
        }
        if let Some(url) = &self.webhook_url {
            environments::set_webhook_url(&ctx.db, &ctx.cipher, env.id, Some(url))
                .await
                .expect("set the webhook URL");
        }
        let workers = self.workers.then(|| Workers::start(ctx.clone()));
        TestApp {
            api: Api::new(&base, &key),
            ctx,
            base,
            env,
            key,
            workers,
            settings: self.settings,
            sdk: self.sdk,
            db,
        }
    }
}
