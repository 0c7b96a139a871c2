//! The api Lambda function: the public REST API behind API Gateway's HTTP API, and the
//! frontend SDK's auth sockets behind its WebSocket API (see `lambda.rs`).

use lasso_api::lambda::Handler;
use lasso_services::{Context, config, telemetry};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    let config = config::from_env_or_exit();
    telemetry::init(config.log_format);
    let ctx = Context::from_config(config).await?;
    let handler = Handler::new(ctx);
    lambda_runtime::run(lambda_runtime::service_fn(move |event| {
        let handler = handler.clone();
        async move { handler.handle(event).await }
    }))
    .await
}
