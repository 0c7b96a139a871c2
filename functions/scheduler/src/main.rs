//! The scheduler Lambda function (EventBridge schedule, every minute; give it a timeout of at
//! least a minute, it ticks for about 50 seconds).

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
        move |event: LambdaEvent<EventBridgeEvent<serde_json::Value>>| async move {
            let reports = lasso_scheduler::handle_invocation(ctx, event.context.deadline()).await;
            ctx.flush_logs().await;
            let reports = reports.map_err(diagnostic)?;
            let sum = |f: fn(&lasso_services::scheduler::TickReport) -> usize| {
                reports.iter().map(f).sum::<usize>()
            };
            Ok::<_, Diagnostic>(serde_json::json!({
                "ticks": reports.len(),
                "scheduled": sum(|r| r.scheduled.created),
                "expired": sum(|r| r.expired),
                "retried": sum(|r| r.retried),
                "dispatched": sum(|r| r.dispatched.sent),
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
