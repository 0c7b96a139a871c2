//! `GET /` with `Upgrade: websocket`: the socket of Nango's frontend SDK (`nango.auth()`). It
//! is sent the ack with its `ws_client_id` at once, then the outcome of the OAuth flow started
//! with that id (see `lasso_services::auth_sockets`). Served where the api runs as a server
//! (`lasso dev`); API Gateway's HTTP API does not pass upgrades on, so on AWS a WebSocket API
//! holds the socket and sends its events to the function (`crate::lambda`).

use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use lasso_services::Context;

/// A socket no flow finished on closes after this: an OAuth session expires sooner.
const MAX_SOCKET_LIFETIME: Duration = Duration::from_secs(30 * 60);

pub fn upgrade(ctx: Context, ws: WebSocketUpgrade) -> Response {
    ws.on_upgrade(move |socket| serve(ctx, socket))
}

async fn serve(ctx: Context, mut socket: WebSocket) {
    let (id, mut outgoing) = ctx.auth_sockets.register();
    let lifetime = tokio::time::sleep(MAX_SOCKET_LIFETIME);
    tokio::pin!(lifetime);
    loop {
        tokio::select! {
            message = outgoing.recv() => {
                let Some(text) = message else { break };
                if socket.send(Message::Text(text.into())).await.is_err() {
                    break;
                }
            }
            incoming = socket.recv() => match incoming {
                // The SDK sends nothing; whatever it might is ignored.
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                Some(Ok(_)) => {}
            },
            () = &mut lifetime => break,
        }
    }
    ctx.auth_sockets.unregister(&id);
    let _ = socket.send(Message::Close(None)).await;
}
