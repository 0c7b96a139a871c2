//! The proxy: calls a provider's API on a connection's behalf, with the connection's
//! credentials put where the provider's catalog entry says. The public `/proxy/*` route and the
//! script SDK's `nango.get/post/proxy` both go through [`send`].
//!
//! - The call goes to the catalog's `proxy.base_url` (filled in with the connection's config),
//!   or to `Base-Url-Override` when it is on that base's origin or listed in the integration's
//!   `custom.allowed_base_url_overrides`; the endpoint always stays under the base
//!   ([`target`]). Redirects are followed only on the same origin; others go back to the caller.
//! - Credentials: see [`auth`].
//! - Retries: only when asked (`retries > 0`), see [`retry`]; a wait longer than
//!   [`MAX_RETRY_WAIT`] is not waited: the provider's answer goes back as it is, with its own
//!   retry headers. A 401 with refreshable credentials forces one refresh and one more try.
//! - The response comes back unread, for the caller to stream.
//!
//! Nothing here logs or returns a URL, header value or body that could carry credentials.

pub(crate) mod auth;
mod retry;
pub(crate) mod target;

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures::StreamExt;
use reqwest::header::{HeaderMap, HeaderName};
use reqwest::{Method, StatusCode};
use serde_json::{Map, Value};

use crate::connections::{Connection, Credentials};
use crate::context::Context;
use crate::outbound;
use crate::providers::Provider;
use crate::refresh;
use crate::{Error, ErrorCode, Result, integrations};

pub use target::ALLOWED_OVERRIDES_KEY;

/// Largest request body the proxy takes: it is held in memory to be sent again on retries.
pub const MAX_REQUEST_BODY: usize = 10 * 1024 * 1024;
/// More retries than this are not made, whatever the caller asks.
pub const MAX_RETRIES: u32 = 10;
/// Longest single wait before a retry.
pub const MAX_RETRY_WAIT: Duration = Duration::from_secs(60);
/// How much of an error body is read to find a retry time in it (`proxy.retry.in_body`).
const MAX_RETRY_BODY: usize = 64 * 1024;

/// What a call to a provider is built from besides the catalog: a connection's config and
/// credentials. A stored [`Connection`] gives them, and so do new credentials checked before
/// they are stored (`proxy.verification`), so both calls follow the same rules.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionAuth<'a> {
    pub connection_config: &'a Map<String, Value>,
    pub credentials: &'a Credentials,
}

impl<'a> From<&'a Connection> for ConnectionAuth<'a> {
    fn from(connection: &'a Connection) -> Self {
        Self {
            connection_config: &connection.connection_config,
            credentials: &connection.credentials,
        }
    }
}

/// One call to make through the proxy.
#[derive(Debug, Clone)]
pub struct ProxyRequest {
    pub method: Method,
    /// Path under the base URL, with an optional query: `/v1/users?limit=10`.
    pub endpoint: String,
    /// Headers for the provider; they win over the injected ones. Hop-by-hop headers, `Host`
    /// and `Content-Length` are dropped.
    pub headers: HeaderMap,
    pub body: Bytes,
    /// Retries after the first attempt (capped at [`MAX_RETRIES`]); 0 never retries.
    pub retries: u32,
    /// Statuses to retry besides 429 and 5xx.
    pub retry_on: Vec<u16>,
    /// Another base URL for this call (Nango's `baseUrlOverride`), may use `${connectionConfig.x}`.
    pub base_url_override: Option<String>,
}

impl ProxyRequest {
    /// A request without headers, body or retries.
    pub fn new(method: Method, endpoint: impl Into<String>) -> Self {
        Self {
            method,
            endpoint: endpoint.into(),
            headers: HeaderMap::new(),
            body: Bytes::new(),
            retries: 0,
            retry_on: Vec::new(),
            base_url_override: None,
        }
    }
}

/// Headers that belong to one HTTP hop and are never passed on (RFC 9110 §7.6.1).
pub fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
    )
}

/// Sends `request` to the provider of `connection` and returns the provider's response, unread.
///
/// Any status the provider answers is a successful result here. Errors are ours or the
/// caller's: a bad endpoint or override ([`Error::Invalid`] naming it), a body over
/// [`MAX_REQUEST_BODY`], credentials that cannot be refreshed, or a provider that cannot be
/// reached ([`Error::Unreachable`]).
pub async fn send(
    ctx: &Context,
    connection: Connection,
    request: &ProxyRequest,
) -> Result<reqwest::Response> {
    if request.body.len() > MAX_REQUEST_BODY {
        return Err(Error::PayloadTooLarge(format!(
            "the request body is {} bytes; the proxy takes at most {MAX_REQUEST_BODY}",
            request.body.len()
        )));
    }
    let provider_name = connection.provider.clone();
    let provider = ctx.providers.require(&provider_name)?;
    let allowed = match &request.base_url_override {
        Some(_) => target::allowed_overrides(
            &integrations::get_by_id(&ctx.db, connection.integration_id).await?,
        )?,
        None => Vec::new(),
    };
    let forwarded: HeaderMap = request
        .headers
        .iter()
        .filter(|(name, _)| {
            !is_hop_by_hop(name) && !matches!(name.as_str(), "host" | "content-length")
        })
        .map(|(n, v)| (n.clone(), v.clone()))
        .collect();
    let retry_config = provider.proxy.as_ref().and_then(|p| p.retry.as_ref());
    let retries = request.retries.min(MAX_RETRIES);
    let path = request.endpoint.split('?').next().unwrap_or_default();

    let mut connection = refresh::fresh(ctx, connection, false).await?;
    let mut attempt = 0;
    let mut refreshed = false;
    loop {
        let base = target::base_url(
            &provider_name,
            provider,
            &connection,
            request.base_url_override.as_deref(),
            &allowed,
        )?;
        let mut url = target::join(&base, &request.endpoint)?;
        auth::query(provider, (&connection).into(), &mut url)?;
        let headers = auth::headers(&provider_name, provider, (&connection).into(), &forwarded)?;
        let mut outgoing = ctx
            .proxy_http
            .request(request.method.clone(), url)
            .map_err(|r| Error::outbound_refused(&r))?
            .headers(headers);
        if !request.body.is_empty() {
            outgoing = outgoing.body(request.body.clone());
        }
        let response = match outgoing.send().await {
            Ok(response) => response,
            Err(ref e) if let Some(refused) = outbound::refusal(e) => {
                return Err(Error::outbound_refused(refused));
            }
            Err(e) if attempt < retries && (e.is_connect() || e.is_timeout()) => {
                let wait = retry::backoff(attempt);
                tracing::warn!(provider = %provider_name, path, attempt, wait_ms = wait.as_millis() as u64,
                    "proxy: provider unreachable, retrying");
                tokio::time::sleep(wait).await;
                attempt += 1;
                continue;
            }
            Err(e) => return Err(unreachable(&provider_name, provider, e)),
        };
        let status = response.status();
        tracing::info!(provider = %provider_name, connection = %connection.connection_id,
            method = %request.method, path, status = status.as_u16(), attempt, "proxy call");

        if status == StatusCode::UNAUTHORIZED && !refreshed && refreshable(&connection.credentials)
        {
            refreshed = true;
            match refresh::fresh(ctx, connection.clone(), true).await {
                Ok(fresh) => {
                    connection = fresh;
                    continue;
                }
                Err(_) => {
                    // `fresh` records why on the connection (and logs nothing of the provider's
                    // answer); the caller gets the provider's 401.
                    tracing::warn!(provider = %provider_name, connection = %connection.connection_id,
                        "proxy: refresh after a 401 failed");
                    return Ok(response);
                }
            }
        }
        if attempt >= retries
            || !retry::retryable(status, response.headers(), &request.retry_on, retry_config)
        {
            return Ok(response);
        }
        let (response, body) = if retry::wants_body(retry_config) {
            peek_json(response, MAX_RETRY_BODY).await
        } else {
            (response, None)
        };
        let wait = retry::wait(
            response.headers(),
            body.as_ref(),
            retry_config,
            attempt,
            SystemTime::now(),
        );
        if wait > MAX_RETRY_WAIT {
            tracing::warn!(provider = %provider_name, path, wait_s = wait.as_secs(),
                "proxy: not retrying, the provider asks for a longer wait than the proxy makes");
            return Ok(response);
        }
        tracing::info!(provider = %provider_name, path, attempt, wait_ms = wait.as_millis() as u64,
            "proxy: retrying");
        drop(response);
        tokio::time::sleep(wait).await;
        attempt += 1;
    }
}

/// Credentials that a refresh can renew.
fn refreshable(credentials: &Credentials) -> bool {
    match credentials {
        Credentials::OAuth2(token) => token.refresh_token.is_some(),
        Credentials::OAuth2ClientCredentials { .. } => true,
        _ => false,
    }
}

fn unreachable(provider_name: &str, provider: &Provider, e: reqwest::Error) -> Error {
    // The URL may carry credentials (a key in the query): the chain is reported without it.
    let e = e.without_url();
    let mut reason = String::new();
    let mut source: Option<&dyn std::error::Error> = Some(&e);
    while let Some(err) = source {
        let text = err.to_string();
        if !reason.contains(&text) {
            if !reason.is_empty() {
                reason.push_str(": ");
            }
            reason.push_str(&text);
        }
        source = err.source();
    }
    Error::Unreachable {
        code: ErrorCode::ProxyUpstreamUnreachable,
        message: format!(
            "could not reach provider `{provider_name}` ({}): {reason}",
            provider.display_name
        ),
    }
}

/// Reads up to `limit` bytes of `response`'s body and parses them as JSON when that is the
/// whole body; returns a response with the same status, headers and whole body.
async fn peek_json(
    response: reqwest::Response,
    limit: usize,
) -> (reqwest::Response, Option<Value>) {
    let mut builder = http::Response::builder()
        .status(response.status())
        .version(response.version());
    if let Some(headers) = builder.headers_mut() {
        *headers = response.headers().clone();
    }
    let mut stream = response.bytes_stream();
    let mut head = Vec::new();
    let mut failed = None;
    let mut complete = false;
    while head.len() <= limit {
        match stream.next().await {
            Some(Ok(chunk)) => head.extend_from_slice(&chunk),
            Some(Err(e)) => {
                failed = Some(e);
                break;
            }
            None => {
                complete = true;
                break;
            }
        }
    }
    let json = if complete {
        serde_json::from_slice(&head).ok()
    } else {
        None
    };
    let rest = futures::stream::once(async move { Ok(Bytes::from(head)) })
        .chain(futures::stream::iter(failed.map(Err)))
        .chain(stream);
    let response = builder
        .body(reqwest::Body::wrap_stream(rest))
        .expect("status and headers come from a valid response");
    (reqwest::Response::from(response), json)
}
