//! The runner Lambda function (SQS event source with ReportBatchItemFailures).

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{LambdaEvent, service_fn};
use lasso_services::{Context, config, telemetry};

// QuickJS allocates small objects by the thousand per run; mimalloc serves them faster than
// the system allocator (measured by benches/sandbox.rs).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let config = config::from_env_or_exit();
    telemetry::init(config.log_format);
    let ctx = Context::from_config(config).await?;
    let ctx = &ctx;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        let response = lasso_runner::handle(ctx, event.payload).await;
        ctx.flush_logs().await;
        Ok::<SqsBatchResponse, lambda_runtime::Error>(response)
    }))
    .await
}
