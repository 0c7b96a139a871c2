//! A webhook receiver: records every request it gets (headers and body) and answers 200.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::http::HeaderMap;
use axum::routing::post;
use hmac::{Hmac, Mac};
use sha2::Sha256;

#[derive(Clone, Debug)]
pub struct Received {
    pub headers: HeaderMap,
    pub body: String,
}

impl Received {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).expect("a JSON webhook body")
    }

    /// Whether `X-Nango-Hmac-Sha256` is `hex(HMAC-SHA256(secret, body))`.
    pub fn signed_with(&self, secret: &str) -> bool {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(self.body.as_bytes());
        self.headers
            .get("x-nango-hmac-sha256")
            .and_then(|v| v.to_str().ok())
            == Some(hex::encode(mac.finalize().into_bytes()).as_str())
    }
}

#[derive(Clone, Default)]
pub struct Receiver {
    pub url: String,
    got: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    /// Serves a receiver at `<url>` on an ephemeral port.
    pub async fn start() -> Self {
        let got: Arc<Mutex<Vec<Received>>> = Arc::default();
        let g = got.clone();
        let base = crate::serve(Router::new().route(
            "/hook",
            post(move |headers: HeaderMap, body: Bytes| {
                let g = g.clone();
                async move {
                    g.lock().unwrap().push(Received {
                        headers,
                        body: String::from_utf8_lossy(&body).into_owned(),
                    });
                }
            }),
        ))
        .await;
        Self {
            url: format!("{base}/hook"),
            got,
        }
    }

    pub fn received(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    /// Waits until `count` requests arrived; returns them.
    pub async fn wait_for(&self, count: usize, timeout: Duration) -> Vec<Received> {
        crate::eventually(
            &format!("{count} webhook(s) at the receiver"),
            timeout,
            || async {
                let got = self.received();
                (got.len() >= count).then_some(got)
            },
        )
        .await
    }
}
