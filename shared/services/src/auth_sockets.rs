//! The sockets of Nango's frontend SDK: `nango.auth()` opens a WebSocket to the host's `/`,
//! waits for `{"message_type": "connection_ack", "ws_client_id"}`, sends its popup to
//! `/oauth/connect/:key?…&ws_client_id=…`, and settles on the `success` or `error` message
//! sent on that socket when the flow ends. The id travels through the OAuth session, so the
//! callback knows whom to tell.
//!
//! This registry holds the sockets of one process (`lasso dev` serves them on `/`). On AWS,
//! API Gateway's HTTP API cannot hold WebSockets; a WebSocket API on its own host, whose
//! messages any api instance can post, is the later step (see the issue), and until then a
//! deployed `nango.auth()` only learns the outcome from the callback page's `postMessage`.

use std::collections::HashMap;
use std::sync::Mutex;

use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::crypto::random_token;

/// Longest `ws_client_id` accepted in a query (the ids handed out are 43 characters).
pub const MAX_CLIENT_ID_LEN: usize = 128;

/// The open sockets of this process, by `ws_client_id`.
#[derive(Default)]
pub struct AuthSockets {
    clients: Mutex<HashMap<String, mpsc::UnboundedSender<String>>>,
}

impl AuthSockets {
    /// A new socket: its id (256 random bits, so no one else can guess it and listen in) and
    /// the receiver of the messages for it. The first message is the ack.
    pub fn register(&self) -> (String, mpsc::UnboundedReceiver<String>) {
        let id = random_token("");
        let (tx, rx) = mpsc::unbounded_channel();
        let ack = json!({"message_type": "connection_ack", "ws_client_id": id});
        // The receiver is alive: it was made just above.
        let _ = tx.send(ack.to_string());
        self.clients
            .lock()
            .expect("auth sockets")
            .insert(id.clone(), tx);
        (id, rx)
    }

    /// Forgets a socket that closed.
    pub fn unregister(&self, id: &str) {
        self.clients.lock().expect("auth sockets").remove(id);
    }

    /// Sends `message` to the socket `id`, if it is open here. Returns whether it was.
    pub fn send(&self, id: &str, message: &Value) -> bool {
        let clients = self.clients.lock().expect("auth sockets");
        clients
            .get(id)
            .is_some_and(|tx| tx.send(message.to_string()).is_ok())
    }

    /// Tells socket `id` the flow created (or re-authorized) a connection.
    pub fn success(&self, id: &str, provider_config_key: &str, connection_id: &str) -> bool {
        self.send(
            id,
            &json!({
                "message_type": "success",
                "provider_config_key": provider_config_key,
                "connection_id": connection_id,
                "is_pending": false,
            }),
        )
    }

    /// Tells socket `id` the flow failed: `error_type` is the API error code.
    pub fn error(&self, id: &str, error_type: &str, error_desc: &str) -> bool {
        self.send(
            id,
            &json!({
                "message_type": "error",
                "error_type": error_type,
                "error_desc": error_desc,
            }),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn acks_then_delivers_to_the_one_client() {
        let sockets = AuthSockets::default();
        let (a, mut rx_a) = sockets.register();
        let (b, mut rx_b) = sockets.register();
        assert_ne!(a, b);
        let ack: Value = serde_json::from_str(&rx_a.recv().await.unwrap()).unwrap();
        assert_eq!(ack["message_type"], "connection_ack");
        assert_eq!(ack["ws_client_id"], a.as_str());
        assert!(sockets.success(&a, "github", "c1"));
        let got: Value = serde_json::from_str(&rx_a.recv().await.unwrap()).unwrap();
        assert_eq!(got["connection_id"], "c1");
        // b saw only its ack.
        rx_b.recv().await.unwrap();
        assert!(rx_b.try_recv().is_err());
        sockets.unregister(&a);
        assert!(!sockets.error(&a, "x", "y"));
    }
}
