//! The frontend SDK's auth socket as deployed on AWS: API Gateway's WebSocket API holds the
//! socket and sends `$connect` / `$disconnect` to the api function, whose handler is driven
//! here with those events (aws_lambda_events types, through the function's own event
//! dispatch). `$connect` records the socket and invokes the function asynchronously; that
//! invocation posts the ack; an OAuth flow against a real OAuth 2 server (oauth2-mock-server),
//! finished by *another* api instance, posts its outcome to the right connection.
//!
//! Posts go through the Management API wire protocol to moto's server
//! (`POST /@connections/{id}`, which moto 5.2 routes in server mode) behind a loopback
//! recorder, because moto keeps what it is sent but offers no call to read it back. The
//! recorder also plays API Gateway's "410 Gone" (a connection not open yet, or closed), which
//! moto never answers, and stands in for Lambda's `Invoke` (moto's needs Docker to run
//! anything, and does not run here): it records the invocation, which the test then hands to
//! the handler as Lambda would.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use lambda_http::aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest;
use lasso_api::lambda::{Event, Handler, Response as Answer};
use lasso_services::auth_socket_connections as store;
use lasso_tests::auth::{MockOAuthServer, browser};
use lasso_tests::*;
use serde_json::{Value, json};

const ACK_FUNCTION: &str = "lasso-api-under-test";

#[derive(Default)]
struct Recorded {
    /// (function, invocation type, payload) of each Lambda `Invoke`.
    invocations: Vec<(String, String, Vec<u8>)>,
    /// Every connection a post was tried for, in order.
    attempts: Vec<String>,
    /// (connection, message) of each post moto accepted.
    delivered: Vec<(String, Value)>,
    /// Connections API Gateway does not know (yet) for so many more posts.
    gone_for: HashMap<String, u32>,
}

/// The loopback recorder in front of moto (Management API) and in place of Lambda (`Invoke`).
#[derive(Clone)]
struct Gateway {
    url: String,
    moto: String,
    recorded: Arc<Mutex<Recorded>>,
}

impl Gateway {
    async fn start() -> Self {
        let mut gateway = Gateway {
            url: String::new(),
            moto: aws_endpoint(),
            recorded: Arc::default(),
        };
        gateway.url = serve(
            axum::Router::new()
                .route("/2015-03-31/functions/{name}/invocations", post(invoke))
                .route("/@connections/{id}", post(post_to_connection))
                .with_state(gateway.clone()),
        )
        .await;
        gateway
    }

    fn gone_for(&self, connection_id: &str, posts: u32) {
        self.recorded
            .lock()
            .unwrap()
            .gone_for
            .insert(connection_id.to_string(), posts);
    }

    fn invocations(&self) -> Vec<(String, String, Vec<u8>)> {
        self.recorded.lock().unwrap().invocations.clone()
    }

    fn attempts(&self, connection_id: &str) -> usize {
        let r = self.recorded.lock().unwrap();
        r.attempts.iter().filter(|c| *c == connection_id).count()
    }

    fn delivered(&self, connection_id: &str) -> Vec<Value> {
        let r = self.recorded.lock().unwrap();
        r.delivered
            .iter()
            .filter(|(c, _)| c == connection_id)
            .map(|(_, m)| m.clone())
            .collect()
    }
}

async fn invoke(
    State(g): State<Gateway>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let kind = headers
        .get("x-amz-invocation-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("RequestResponse")
        .to_string();
    g.recorded
        .lock()
        .unwrap()
        .invocations
        .push((name, kind, body.to_vec()));
    StatusCode::ACCEPTED
}

async fn post_to_connection(
    State(g): State<Gateway>,
    Path(id): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let gone = {
        let mut r = g.recorded.lock().unwrap();
        r.attempts.push(id.clone());
        match r.gone_for.get_mut(&id) {
            Some(left) if *left > 0 => {
                *left -= 1;
                true
            }
            _ => false,
        }
    };
    if gone {
        return (
            StatusCode::GONE,
            [("x-amzn-errortype", "GoneException")],
            r#"{"message":"Gone"}"#,
        )
            .into_response();
    }
    let mut forward = reqwest::Client::new().post(format!("{}{}", g.moto, uri.path()));
    for (name, value) in &headers {
        if !matches!(name.as_str(), "host" | "content-length") {
            forward = forward.header(name, value);
        }
    }
    let answer = forward
        .body(body.clone())
        .send()
        .await
        .expect("moto answers");
    let status = answer.status();
    let text = answer.text().await.expect("moto's answer");
    if status.is_success() {
        let message = serde_json::from_slice(&body).expect("a JSON message");
        g.recorded.lock().unwrap().delivered.push((id, message));
    }
    (StatusCode::from_u16(status.as_u16()).unwrap(), text).into_response()
}

/// An event of the WebSocket API as API Gateway sends it to the function.
fn socket_event(route_key: &str, connection_id: &str) -> Value {
    let event_type = match route_key {
        "$connect" => "CONNECT",
        "$disconnect" => "DISCONNECT",
        _ => "MESSAGE",
    };
    json!({
        "headers": {"Host": "abc123.execute-api.us-east-1.amazonaws.com"},
        "multiValueHeaders": {"Host": ["abc123.execute-api.us-east-1.amazonaws.com"]},
        "requestContext": {
            "routeKey": route_key,
            "eventType": event_type,
            "extendedRequestId": "Xy1=",
            "requestTime": "07/Dec/2026:01:02:03 +0000",
            "messageDirection": "IN",
            "stage": "auth",
            "connectedAt": 1_796_000_000_000u64,
            "requestTimeEpoch": 1_796_000_000_000u64,
            "identity": {"sourceIp": "127.0.0.1"},
            "requestId": "Xy1=",
            "domainName": "abc123.execute-api.us-east-1.amazonaws.com",
            "connectionId": connection_id,
            "apiId": "abc123"
        },
        "isBase64Encoded": false
    })
}

/// What the function answers `payload`, as its run loop would (the payload parsed as the
/// function's event first).
async fn invoke_handler(handler: &Handler, payload: &[u8]) -> Answer {
    let event: Event = serde_json::from_slice(payload).expect("an event of the api function");
    handler
        .handle(lambda_http::LambdaEvent::new(
            event,
            lambda_http::Context::default(),
        ))
        .await
        .expect("the handler answers")
}

/// Drives `$connect` for `connection_id` as the aws_lambda_events type; returns its status.
async fn connect(handler: &Handler, connection_id: &str) -> i64 {
    let event: ApiGatewayWebsocketProxyRequest =
        serde_json::from_value(socket_event("$connect", connection_id)).unwrap();
    match handler
        .handle(lambda_http::LambdaEvent::new(
            Event::Socket(Box::new(event)),
            lambda_http::Context::default(),
        ))
        .await
        .expect("the handler answers")
    {
        Answer::Socket(r) => r.status_code,
        _ => panic!("$connect gets the WebSocket API's answer"),
    }
}

struct Setup {
    gateway: Gateway,
    /// The instance that got the WebSocket API's events.
    sockets: Handler,
    /// Another instance: it serves the HTTP API, where the OAuth flow runs.
    app: TestApp,
    _mock: MockOAuthServer,
}

setup_derefs_to_app!(Setup);

fn catalog(mock: &str) -> String {
    format!(
        r#"
mock-oauth:
    display_name: Mock OAuth
    auth_mode: OAUTH2
    authorization_url: {mock}/authorize
    token_url: {mock}/token
    default_scopes: [openid]
"#
    )
}

async fn setup() -> Setup {
    let gateway = Gateway::start().await;
    let mock = MockOAuthServer::start(None).await;
    let app = TestApp::builder()
        .providers(&catalog(&mock.url))
        .setting("LASSO_AUTH_SOCKET_ENDPOINT", gateway.url.clone())
        .setting("LASSO_AUTH_SOCKET_ACK_FUNCTION", ACK_FUNCTION)
        // Lambda's and the Management API's calls go to the recorder (S3 and SQS are unused).
        .sdk(aws_sdk_config_at(&gateway.url))
        .integration("mock", "mock-oauth", "read")
        .start()
        .await;
    Setup {
        gateway,
        sockets: Handler::new(app.another_instance()),
        app,
        _mock: mock,
    }
}

impl Setup {
    /// `$connect`, then the asynchronous invocation it asked for, as Lambda runs it: the
    /// connection's ack. Returns the socket's `ws_client_id`.
    async fn open_socket(&self, connection_id: &str) -> String {
        assert_eq!(connect(&self.sockets, connection_id).await, 200);
        let invocation = self
            .gateway
            .invocations()
            .into_iter()
            .find(|(_, _, payload)| {
                serde_json::from_slice::<Value>(payload).unwrap()["lasso_auth_socket_ack"]
                    ["connection_id"]
                    == connection_id
            })
            .expect("$connect invoked the function for the ack");
        assert_eq!(invocation.0, ACK_FUNCTION);
        assert_eq!(
            invocation.1, "Event",
            "asynchronously: $connect must return first"
        );
        assert!(matches!(
            invoke_handler(&self.sockets, &invocation.2).await,
            Answer::Done
        ));
        let delivered = self.gateway.delivered(connection_id);
        assert_eq!(delivered.len(), 1, "{delivered:?}");
        assert_eq!(delivered[0]["message_type"], "connection_ack");
        delivered[0]["ws_client_id"]
            .as_str()
            .expect("the ack names the socket")
            .to_string()
    }

    /// The popup's `GET /oauth/connect/mock?ws_client_id=…`, through to the provider's consent:
    /// the callback URL the provider sends the browser back to.
    async fn authorize(&self, ws_client_id: &str) -> String {
        let res = browser()
            .get(format!(
                "{}/oauth/connect/mock?connection_id=alice&ws_client_id={ws_client_id}",
                self.base
            ))
            .bearer_auth(&self.key)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 302, "{}", res.text().await.unwrap());
        res.headers()["location"].to_str().unwrap().to_string()
    }

    async fn land(&self, url: &str) -> u16 {
        browser().get(url).send().await.unwrap().status().as_u16()
    }
}

#[tokio::test]
async fn the_outcome_of_an_oauth_flow_reaches_the_socket_api_gateway_holds() {
    let s = setup().await;
    // The asynchronous invocation may start before API Gateway has opened the connection:
    // the first post is refused as gone, the next one lands.
    let connection = "L0SM9cOFvHcCIhw=";
    s.gateway.gone_for(connection, 1);
    let ws_client_id = s.open_socket(connection).await;
    assert_eq!(s.gateway.attempts(connection), 2);
    assert_eq!(ws_client_id.len(), 43, "256 random bits");

    // The popup's flow, finished by the other api instance.
    let authorize = s.authorize(&ws_client_id).await;
    let consent = browser().get(&authorize).send().await.unwrap();
    assert_eq!(consent.status(), 302);
    let callback = consent.headers()["location"].to_str().unwrap().to_string();
    assert_eq!(s.land(&callback).await, 200);

    let delivered = s.gateway.delivered(connection);
    assert_eq!(delivered.len(), 2, "{delivered:?}");
    assert_eq!(
        delivered[1],
        json!({
            "message_type": "success",
            "provider_config_key": "mock",
            "connection_id": "alice",
            "is_pending": false,
        })
    );
    let (status, body) = Api::new(&s.base, &s.key)
        .get("/connections/alice?provider_config_key=mock")
        .await;
    assert_eq!(status, 200, "{body}");

    // $disconnect forgets the socket: nothing more is posted for its id.
    let disconnect = serde_json::to_vec(&socket_event("$disconnect", connection)).unwrap();
    assert!(matches!(
        invoke_handler(&s.sockets, &disconnect).await,
        Answer::Socket(r) if r.status_code == 200
    ));
    assert_eq!(
        store::connection_of(&s.ctx.db, &ws_client_id)
            .await
            .unwrap(),
        None
    );
    assert!(
        !s.ctx
            .auth_sockets
            .success(&ws_client_id, "mock", "alice")
            .await
    );
    assert_eq!(
        s.gateway.attempts(connection),
        3,
        "no post after $disconnect"
    );
}

#[tokio::test]
async fn a_failed_flow_is_told_to_its_socket_and_a_gone_socket_is_forgotten() {
    let s = setup().await;
    let connection = "Zq9mAbCdEfGh1w=";
    let other = "Yp8nZyXwVuTs2v=";
    let ws_client_id = s.open_socket(connection).await;
    let other_id = s.open_socket(other).await;
    assert_ne!(ws_client_id, other_id);

    // The provider reports an error instead of a code.
    let authorize = s.authorize(&ws_client_id).await;
    let state = url::Url::parse(&authorize)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "state")
        .unwrap()
        .1
        .into_owned();
    let status = s
        .land(&format!(
            "{}/oauth/callback?state={state}&error=access_denied&error_description=The+user+said+no",
            s.base
        ))
        .await;
    assert_eq!(status, 400);
    let delivered = s.gateway.delivered(connection);
    assert_eq!(delivered.len(), 2, "{delivered:?}");
    assert_eq!(delivered[1]["message_type"], "error");
    assert_eq!(delivered[1]["error_type"], "authorization_refused");
    assert!(
        delivered[1]["error_desc"]
            .as_str()
            .unwrap()
            .contains("access_denied"),
        "{delivered:?}"
    );
    // The other socket heard only its ack.
    assert_eq!(s.gateway.delivered(other).len(), 1);

    // A socket API Gateway calls gone (closed without a `$disconnect` yet) is forgotten.
    s.gateway.gone_for(other, 1);
    assert!(!s.ctx.auth_sockets.error(&other_id, "x", "y").await);
    assert_eq!(
        store::connection_of(&s.ctx.db, &other_id).await.unwrap(),
        None
    );
}

#[tokio::test]
async fn the_function_still_serves_the_http_api_and_ignores_socket_messages() {
    let s = setup().await;
    let request = json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": "/providers/github",
        "rawQueryString": "",
        "headers": {"host": "api.example.test", "authorization": format!("Bearer {}", s.key)},
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "api",
            "domainName": "api.example.test",
            "domainPrefix": "api",
            "http": {"method": "GET", "path": "/providers/github", "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": "test"},
            "requestId": "r1",
            "routeKey": "$default",
            "stage": "$default",
            "time": "07/Dec/2026:01:02:03 +0000",
            "timeEpoch": 1_796_000_000_000u64
        },
        "isBase64Encoded": false
    });
    let answer = invoke_handler(&s.sockets, &serde_json::to_vec(&request).unwrap()).await;
    let Answer::Http(response) = answer else {
        panic!("an HTTP API request gets an HTTP answer")
    };
    let response = serde_json::to_value(response).unwrap();
    assert_eq!(response["statusCode"], 200, "{response}");
    let body: Value = serde_json::from_str(response["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["data"]["name"], "github");

    // Whatever a client sends on the socket is ignored (the SDK sends nothing).
    let mut message = socket_event("$default", "Zz0=");
    message["body"] = json!("{\"action\":\"hello\"}");
    assert!(matches!(
        invoke_handler(&s.sockets, &serde_json::to_vec(&message).unwrap()).await,
        Answer::Socket(r) if r.status_code == 200
    ));
    assert!(s.gateway.invocations().is_empty() && s.gateway.attempts("Zz0=") == 0);
}
