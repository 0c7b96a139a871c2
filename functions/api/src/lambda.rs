//! The api function's events on Lambda, three kinds:
//! - the HTTP API's requests: the axum [`router`](crate::router), through lambda_http;
//! - the WebSocket API's `$connect`, `$disconnect` and `$default` (the frontend SDK's auth
//!   socket, see `lasso_services::auth_sockets`);
//! - the function's own asynchronous invocation that sends a new socket its ack
//!   ([`AckEvent`]), asked for by `$connect` because a post during `$connect` fails.
//!
//! The function handles the sockets itself rather than a function of their own: the
//! callback that tells a socket how its flow ended runs here anyway, with the same database
//! pool and settings, and the events are a few lines of dispatch.

use std::convert::Infallible;

use lambda_http::aws_lambda_events::apigw::{
    ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest,
};
use lambda_http::request::LambdaRequest;
use lambda_http::{Adapter, LambdaEvent, Service};
use lasso_services::Context;
use lasso_services::adapters::websocket_api::AckEvent;
use serde::de::{Deserializer, Error as _, IgnoredAny};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// One invocation's payload.
#[derive(Debug)]
pub enum Event {
    Http(Box<LambdaRequest>),
    Socket(Box<ApiGatewayWebsocketProxyRequest>),
    SocketAck(AckEvent),
}

/// Enough of a payload to tell the kinds apart: WebSocket API events carry an `eventType`
/// and a `connectionId` in their request context (HTTP API requests have neither); the ack is
/// the only payload with `lasso_auth_socket_ack`.
#[derive(Deserialize)]
struct Probe {
    lasso_auth_socket_ack: Option<IgnoredAny>,
    #[serde(rename = "requestContext")]
    request_context: Option<ProbeContext>,
}

#[derive(Deserialize)]
struct ProbeContext {
    #[serde(rename = "eventType")]
    event_type: Option<IgnoredAny>,
    #[serde(rename = "connectionId")]
    connection_id: Option<IgnoredAny>,
}

impl<'de> Deserialize<'de> for Event {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = Box::<RawValue>::deserialize(d)?;
        let probe: Probe = serde_json::from_str(raw.get()).map_err(D::Error::custom)?;
        if probe.lasso_auth_socket_ack.is_some() {
            return serde_json::from_str(raw.get())
                .map(Event::SocketAck)
                .map_err(D::Error::custom);
        }
        if probe
            .request_context
            .is_some_and(|c| c.event_type.is_some() && c.connection_id.is_some())
        {
            return serde_json::from_str(raw.get())
                .map(|e| Event::Socket(Box::new(e)))
                .map_err(D::Error::custom);
        }
        serde_json::from_str(raw.get())
            .map(|r| Event::Http(Box::new(r)))
            .map_err(D::Error::custom)
    }
}

/// lambda_http's answer to a request, in the shape its origin (HTTP API, ...) wants.
type HttpResponse = <Adapter<'static, axum::response::Response, axum::Router> as Service<
    LambdaEvent<LambdaRequest>,
>>::Response;

/// What an invocation answers: lambda_http's response, the WebSocket API's (its status
/// decides whether a `$connect` is accepted), or nothing for the ack.
#[derive(Serialize)]
#[serde(untagged)]
pub enum Response {
    Http(HttpResponse),
    Socket(ApiGatewayProxyResponse),
    Done,
}

/// The api function's handler, built once before the run loop.
#[derive(Clone)]
pub struct Handler {
    ctx: Context,
    app: axum::Router,
}

impl Handler {
    pub fn new(ctx: Context) -> Self {
        Self {
            app: crate::router(ctx.clone()),
            ctx,
        }
    }

    pub async fn handle(&self, event: LambdaEvent<Event>) -> Result<Response, lambda_http::Error> {
        let (payload, context) = (event.payload, event.context);
        match payload {
            Event::Http(request) => {
                let mut adapter = Adapter::from(self.app.clone());
                let answer: Result<_, Infallible> =
                    adapter.call(LambdaEvent::new(*request, context)).await;
                Ok(Response::Http(
                    answer.unwrap_or_else(|never| match never {}),
                ))
            }
            Event::Socket(event) => Ok(Response::Socket(self.socket_event(&event).await)),
            Event::SocketAck(ack) => {
                self.ctx
                    .auth_sockets
                    .send_ack(&ack.lasso_auth_socket_ack.connection_id)
                    .await?;
                Ok(Response::Done)
            }
        }
    }

    /// `$connect` gets the socket an id and its ack on the way; `$disconnect` forgets it;
    /// `$default` carries what the client sends, and the SDK sends nothing, so it is ignored.
    async fn socket_event(
        &self,
        event: &ApiGatewayWebsocketProxyRequest,
    ) -> ApiGatewayProxyResponse {
        let context = &event.request_context;
        let connection_id = context.connection_id.as_deref().unwrap_or_default();
        let sockets = &self.ctx.auth_sockets;
        let done = match context.route_key.as_deref() {
            Some("$connect") => sockets.connected(connection_id).await,
            Some("$disconnect") => sockets.disconnected(connection_id).await,
            _ => Ok(()),
        };
        let mut response = ApiGatewayProxyResponse::default();
        response.status_code = match done {
            Ok(()) => 200,
            Err(e) => {
                tracing::error!(error = %e, route = ?context.route_key, "auth socket event failed");
                500
            }
        };
        response
    }
}
