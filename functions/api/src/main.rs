//! The api Lambda function: the public REST API behind API Gateway.

use lasso_services::{Context, config, telemetry};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    let config = config::from_env_or_exit();
    telemetry::init(config.log_format);
    let ctx = Context::from_config(config).await?;
    lambda_http::run(lasso_api::router(ctx)).await
}
