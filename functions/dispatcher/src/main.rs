//! The dispatcher Lambda function (EventBridge schedule).

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use lambda_runtime::{LambdaEvent, service_fn};
use lasso_services::{Context, config, telemetry};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let config = config::from_env_or_exit();
    telemetry::init(config.log_format);
    let ctx = Context::from_config(config).await?;
    let ctx = &ctx;
    lambda_runtime::run(service_fn(
        move |_: LambdaEvent<EventBridgeEvent<serde_json::Value>>| async move {
            let report = lasso_dispatcher::handle(ctx).await?;
            Ok::<_, lambda_runtime::Error>(serde_json::json!({
                "claimed": report.claimed, "redispatched": report.redispatched, "sent": report.sent, "released": report.released
            }))
        },
    ))
    .await
}
