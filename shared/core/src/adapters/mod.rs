//! Every outside dependency sits behind a small trait with an AWS implementation and a local
//! one, chosen by config at start-up and built once per process.

pub mod log_sink;
pub mod script_store;
pub mod transport;
pub mod websocket_api;

pub use log_sink::LogSink;
pub use script_store::ScriptStore;
pub use transport::TaskTransport;

/// Loads the AWS SDK configuration once. `AWS_ENDPOINT_URL` and the usual credential and
/// region variables are honoured by the SDK itself.
pub async fn aws_sdk_config() -> aws_config::SdkConfig {
    aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await
}

/// True when S3 is reached through a custom endpoint (moto, MinIO), which needs path-style
/// addressing.
fn custom_s3_endpoint(sdk: &aws_config::SdkConfig) -> bool {
    sdk.endpoint_url().is_some()
        || std::env::var("AWS_ENDPOINT_URL_S3").is_ok_and(|s| !s.is_empty())
}
