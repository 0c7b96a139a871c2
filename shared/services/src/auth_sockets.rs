//! The sockets of Nango's frontend SDK: `nango.auth()` opens a WebSocket, waits for
//! `{"message_type": "connection_ack", "ws_client_id"}`, sends its popup to
//! `/oauth/connect/:key?…&ws_client_id=…`, and settles on the `success` or `error` message
//! sent on that socket when the flow ends. The id travels through the OAuth session, so the
//! callback knows whom to tell. The SDK itself never sends anything on the socket.
//!
//! Who holds the sockets differs, what they are told does not ([`SocketMessage`], and
//! [`AuthSockets::success`] / [`AuthSockets::error`] for every caller):
//! - `lasso dev` holds them itself, at `/` ([`AuthSockets::register`]): the ack goes out at
//!   once, the outcome through this process's registry.
//! - On AWS, API Gateway's WebSocket API holds them (`LASSO_AUTH_SOCKET_ENDPOINT`). `$connect`
//!   ([`AuthSockets::connected`]) records the client id under the connection in Postgres and
//!   has the ack sent by an asynchronous invocation ([`AuthSockets::send_ack`]), because a post
//!   during `$connect` fails; any api instance then finds the connection of a client id there
//!   and posts to it through the Management API; `$disconnect` forgets it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;
use sqlx::PgPool;
use tokio::sync::mpsc;

use crate::adapters::websocket_api::{Posted, WebSocketApi};
use crate::auth_socket_connections as store;
use crate::crypto::random_token;
use crate::{Error, Result};

/// Longest `ws_client_id` accepted in a query (the ids handed out are 43 characters).
pub const MAX_CLIENT_ID_LEN: usize = 128;

/// How long the ack keeps being retried while API Gateway calls a new connection gone: its
/// `$connect` may still be returning when the asynchronous invocation starts. Doubling from
/// 50 ms, about 6 s in all.
const ACK_RETRIES: u32 = 7;
const ACK_FIRST_RETRY: Duration = Duration::from_millis(50);

/// What the SDK is told on its socket (`message_type` names the kind, as Nango sends it).
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "message_type", rename_all = "snake_case")]
pub enum SocketMessage<'a> {
    /// The socket's id, to be carried through the OAuth flow; the SDK opens its popup on it.
    ConnectionAck { ws_client_id: &'a str },
    /// The flow created (or re-authorized) a connection.
    Success {
        provider_config_key: &'a str,
        connection_id: &'a str,
        is_pending: bool,
    },
    /// The flow failed: `error_type` is the API error code, `error_desc` its message.
    Error {
        error_type: &'a str,
        error_desc: &'a str,
    },
}

impl SocketMessage<'_> {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a socket message serializes")
    }
}

/// The frontend SDK's sockets: those this process holds, and API Gateway's when configured.
#[derive(Default)]
pub struct AuthSockets {
    local: Mutex<HashMap<String, mpsc::UnboundedSender<String>>>,
    gateway: Option<Gateway>,
}

struct Gateway {
    db: PgPool,
    api: WebSocketApi,
}

impl AuthSockets {
    /// With API Gateway's WebSocket API (`LASSO_AUTH_SOCKET_ENDPOINT`) or without.
    pub fn new(gateway: Option<(PgPool, WebSocketApi)>) -> Self {
        Self {
            local: Mutex::default(),
            gateway: gateway.map(|(db, api)| Gateway { db, api }),
        }
    }

    /// A new socket held by this process: its id (256 random bits, so no one else can guess it
    /// and listen in) and the receiver of the messages for it. The first message is the ack.
    pub fn register(&self) -> (String, mpsc::UnboundedReceiver<String>) {
        let id = random_token("");
        let (tx, rx) = mpsc::unbounded_channel();
        let ack = SocketMessage::ConnectionAck { ws_client_id: &id }.to_json();
        // The receiver is alive: it was made just above.
        let _ = tx.send(ack);
        self.local
            .lock()
            .expect("auth sockets")
            .insert(id.clone(), tx);
        (id, rx)
    }

    /// Forgets a socket of this process that closed.
    pub fn unregister(&self, id: &str) {
        self.local.lock().expect("auth sockets").remove(id);
    }

    /// Tells socket `id` the flow created (or re-authorized) a connection. Returns whether a
    /// socket got it.
    pub async fn success(&self, id: &str, provider_config_key: &str, connection_id: &str) -> bool {
        self.tell(
            id,
            &SocketMessage::Success {
                provider_config_key,
                connection_id,
                is_pending: false,
            },
        )
        .await
    }

    /// Tells socket `id` the flow failed: `error_type` is the API error code.
    pub async fn error(&self, id: &str, error_type: &str, error_desc: &str) -> bool {
        self.tell(
            id,
            &SocketMessage::Error {
                error_type,
                error_desc,
            },
        )
        .await
    }

    /// Sends `message` to socket `id` wherever it is open. A socket that is not (closed, or
    /// never opened) is no error: the callback page tells the opener too.
    async fn tell(&self, id: &str, message: &SocketMessage<'_>) -> bool {
        let text = message.to_json();
        let held_here = self
            .local
            .lock()
            .expect("auth sockets")
            .get(id)
            .map(|tx| tx.send(text.clone()).is_ok());
        if let Some(sent) = held_here {
            return sent;
        }
        let Some(gateway) = &self.gateway else {
            return false;
        };
        match gateway.tell(id, &text).await {
            Ok(sent) => sent,
            Err(e) => {
                tracing::warn!(error = %e, "could not tell the frontend SDK's socket how its flow ended");
                false
            }
        }
    }

    fn gateway(&self) -> Result<&Gateway> {
        self.gateway.as_ref().ok_or_else(|| {
            Error::Internal(
                "a WebSocket API event arrived, but LASSO_AUTH_SOCKET_ENDPOINT is not set".into(),
            )
        })
    }

    /// API Gateway's `$connect`: gives the connection a client id and has its ack sent once
    /// `$connect` has returned.
    pub async fn connected(&self, connection_id: &str) -> Result<()> {
        let gateway = self.gateway()?;
        store::open(&gateway.db, &random_token(""), connection_id).await?;
        gateway.api.request_ack(connection_id).await
    }

    /// API Gateway's `$disconnect`.
    pub async fn disconnected(&self, connection_id: &str) -> Result<()> {
        store::close(&self.gateway()?.db, connection_id).await
    }

    /// The asynchronous invocation [`Self::connected`] asked for: sends the connection its ack,
    /// retrying while API Gateway does not know it yet. Returns whether it was delivered (not
    /// when the connection closed before, or never opened).
    pub async fn send_ack(&self, connection_id: &str) -> Result<bool> {
        let gateway = self.gateway()?;
        let Some(id) = store::client_of(&gateway.db, connection_id).await? else {
            return Ok(false);
        };
        let ack = SocketMessage::ConnectionAck { ws_client_id: &id }.to_json();
        let mut wait = ACK_FIRST_RETRY;
        for attempt in 0..=ACK_RETRIES {
            if attempt > 0 {
                tokio::time::sleep(wait).await;
                wait *= 2;
            }
            if gateway.api.post(connection_id, &ack).await? == Posted::Delivered {
                return Ok(true);
            }
        }
        tracing::warn!(
            connection_id,
            "API Gateway never knew the new auth socket's connection; its ack was not sent"
        );
        Ok(false)
    }
}

impl Gateway {
    async fn tell(&self, id: &str, text: &str) -> Result<bool> {
        let Some(connection_id) = store::connection_of(&self.db, id).await? else {
            return Ok(false);
        };
        match self.api.post(&connection_id, text).await? {
            Posted::Delivered => Ok(true),
            Posted::Gone => {
                store::close(&self.db, &connection_id).await?;
                Ok(false)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    #[tokio::test]
    async fn acks_then_delivers_to_the_one_client() {
        let sockets = AuthSockets::default();
        let (a, mut rx_a) = sockets.register();
        let (b, mut rx_b) = sockets.register();
        assert_ne!(a, b);
        let ack: Value = serde_json::from_str(&rx_a.recv().await.unwrap()).unwrap();
        assert_eq!(ack["message_type"], "connection_ack");
        assert_eq!(ack["ws_client_id"], a.as_str());
        assert!(sockets.success(&a, "github", "c1").await);
        let got: Value = serde_json::from_str(&rx_a.recv().await.unwrap()).unwrap();
        assert_eq!(got["connection_id"], "c1");
        // b saw only its ack.
        rx_b.recv().await.unwrap();
        assert!(rx_b.try_recv().is_err());
        sockets.unregister(&a);
        assert!(!sockets.error(&a, "x", "y").await);
    }

    #[test]
    fn messages_have_nangos_shapes() {
        let parse = |m: SocketMessage| serde_json::from_str::<Value>(&m.to_json()).unwrap();
        assert_eq!(
            parse(SocketMessage::ConnectionAck { ws_client_id: "w" }),
            json!({"message_type": "connection_ack", "ws_client_id": "w"})
        );
        assert_eq!(
            parse(SocketMessage::Success {
                provider_config_key: "gh",
                connection_id: "c1",
                is_pending: false
            }),
            json!({"message_type": "success", "provider_config_key": "gh", "connection_id": "c1", "is_pending": false})
        );
        assert_eq!(
            parse(SocketMessage::Error {
                error_type: "provider_error",
                error_desc: "no"
            }),
            json!({"message_type": "error", "error_type": "provider_error", "error_desc": "no"})
        );
    }

    #[tokio::test]
    async fn gateway_events_without_the_setting_name_it() {
        let sockets = AuthSockets::default();
        let e = sockets.connected("abc=").await.unwrap_err();
        assert!(e.to_string().contains("LASSO_AUTH_SOCKET_ENDPOINT"), "{e}");
    }
}
