//! The dispatcher Lambda function (EventBridge schedule).

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use lambda_runtime::{Diagnostic, LambdaEvent, service_fn};
use lasso_services::{Context, config, telemetry};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let config = config::from_env_or_exit();
    telemetry::init(config.log_format);
    let ctx = Context::from_config(config).await?;
    let ctx = &ctx;
    lambda_runtime::run(service_fn(
        move |_: LambdaEvent<EventBridgeEvent<serde_json::Value>>| async move {
            let report = lasso_dispatcher::handle(ctx)
                .await
                .map_err(diagnostic)?;
            Ok::<_, Diagnostic>(serde_json::json!({
                "claimed": report.claimed, "redispatched": report.redispatched, "sent": report.sent, "released": report.released
            }))
        },
    ))
    .await
}

/// A failed invocation names its class (`Lasso.Database`, `Lasso.Transport`, ...) as its
/// `errorType`, so CloudWatch metrics and alarms can tell the kinds apart.
fn diagnostic(e: lasso_services::Error) -> Diagnostic {
    Diagnostic {
        error_type: e.class().to_string(),
        error_message: e.to_string(),
    }
}
