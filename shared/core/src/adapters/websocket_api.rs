//! API Gateway's WebSocket API seen from the backend: it holds the frontend SDK's auth sockets
//! on AWS, and any process posts to one of them through the Management API
//! (`POST /@connections/{id}`).
//!
//! A post made while the connection's `$connect` integration still runs fails (the connection
//! exists only once `$connect` has returned), so the ack a new socket waits for cannot be sent
//! from `$connect` itself. [`WebSocketApi::request_ack`] invokes the api function
//! asynchronously with an [`AckEvent`]; that second invocation sends the ack, retrying while
//! API Gateway still calls the connection gone (`$connect` may not have returned yet).

use aws_sdk_apigatewaymanagement::primitives::Blob;
use aws_sdk_lambda::types::InvocationType;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The payload of the asynchronous invocation that sends a new socket its ack:
/// `{"lasso_auth_socket_ack": {"connection_id": "..."}}`. Only a direct invocation of the
/// function can carry it (API Gateway's events have another shape).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AckEvent {
    pub lasso_auth_socket_ack: AckRequest,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AckRequest {
    pub connection_id: String,
}

/// What became of a post.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Posted {
    Delivered,
    /// API Gateway has no such open connection (410): it closed, or is not open yet.
    Gone,
}

pub struct WebSocketApi {
    connections: aws_sdk_apigatewaymanagement::Client,
    lambda: aws_sdk_lambda::Client,
    ack_function: String,
}

fn socket_error(action: &str, e: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::AuthSocket {
        message: format!(
            "{action}: {}",
            aws_sdk_apigatewaymanagement::error::DisplayErrorContext(&e)
        ),
        source: Some(Box::new(e)),
    }
}

impl WebSocketApi {
    /// `endpoint` is the API's https URL with its stage (`LASSO_AUTH_SOCKET_ENDPOINT`);
    /// `ack_function` the function [`Self::request_ack`] invokes.
    pub fn new(sdk: &aws_config::SdkConfig, endpoint: &str, ack_function: String) -> Self {
        let conf = aws_sdk_apigatewaymanagement::config::Builder::from(sdk)
            .endpoint_url(endpoint)
            .build();
        Self {
            connections: aws_sdk_apigatewaymanagement::Client::from_conf(conf),
            lambda: aws_sdk_lambda::Client::new(sdk),
            ack_function,
        }
    }

    /// Sends `message` (a text frame) to the connection.
    pub async fn post(&self, connection_id: &str, message: &str) -> Result<Posted> {
        match self
            .connections
            .post_to_connection()
            .connection_id(connection_id)
            .data(Blob::new(message.as_bytes()))
            .send()
            .await
        {
            Ok(_) => Ok(Posted::Delivered),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_gone_exception()) => {
                Ok(Posted::Gone)
            }
            Err(e) => Err(socket_error("PostToConnection", e)),
        }
    }

    /// Has the ack function invoked asynchronously (Lambda queues the event and answers at
    /// once) to send the connection its ack.
    pub async fn request_ack(&self, connection_id: &str) -> Result<()> {
        let event = AckEvent {
            lasso_auth_socket_ack: AckRequest {
                connection_id: connection_id.to_string(),
            },
        };
        let payload = serde_json::to_vec(&event).map_err(|e| Error::AuthSocket {
            message: format!("encoding the ack event: {e}"),
            source: Some(Box::new(e)),
        })?;
        self.lambda
            .invoke()
            .function_name(&self.ack_function)
            .invocation_type(InvocationType::Event)
            .payload(aws_sdk_lambda::primitives::Blob::new(payload))
            .send()
            .await
            .map_err(|e| socket_error("Invoke (the ack)", e))?;
        Ok(())
    }
}
