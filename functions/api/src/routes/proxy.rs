//! `/proxy/*`: calls the provider's API with a connection's credentials (Nango's proxy). The
//! caller names the connection with `Connection-Id` and `Provider-Config-Key`; `Retries`,
//! `Retry-On` and `Base-Url-Override` steer the call; `Nango-Proxy-<Name>` headers, `Content-Type`
//! and `Accept` go to the provider. The provider's status, headers and body come back unchanged,
//! the body streamed.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, Method, StatusCode};
use axum::response::Response;
use axum::routing::any;
use futures::StreamExt;
use lasso_services::logs::{Level, MessageKind, OperationKind, OperationLog, OperationState};
use lasso_services::proxy::{self, MAX_REQUEST_BODY, ProxyRequest};
use lasso_services::{Context, Error, connections};
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouterExt};
use utoipa_axum::routes;

use crate::auth::Env;
use crate::connection_headers::{ConnectionHeaders, text};
use crate::error::{ApiError, ApiResult, ErrorCode};

const FORWARD_PREFIX: &str = "nango-proxy-";

pub fn router() -> OpenApiRouter<Context> {
    // The catch-all needs a non-empty rest; `/proxy/` and `/proxy` call the base URL itself.
    // Every method reaches the handler (which refuses CONNECT, TRACE), not only the documented
    // ones: OpenAPI has no CONNECT operation.
    OpenApiRouter::new()
        .routes(routes!(call).map(|_| any(call)))
        .routes(routes!(call_base_slash).map(|_| any(call_base_slash)))
        .routes(routes!(call_base).map(|_| any(call_base)))
}

/// The headers every proxy call reads, for the document.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
struct ProxyHeaders {
    /// The connection id
    #[param(rename = "Connection-Id")]
    connection_id: String,
    /// The integration's unique key
    #[param(rename = "Provider-Config-Key")]
    provider_config_key: String,
    /// Retries of a failed call (a whole number)
    #[param(rename = "Retries")]
    retries: Option<String>,
    /// Status codes to retry, comma-separated
    #[param(rename = "Retry-On")]
    retry_on: Option<String>,
    /// Another base URL for this call
    #[param(rename = "Base-Url-Override")]
    base_url_override: Option<String>,
}

/// The proxy, calling the base URL itself.
#[utoipa::path(
    method(get, post, put, patch, delete, head, options, trace),
    path = "/proxy/",
    tag = "proxy",
    security(("secret_key" = [])),
    params(ProxyHeaders),
    responses(
        (status = "default", description = "The provider's answer, status, headers and body unchanged; or an error of Lasso's (`ErrorBody`) when the call could not be made", body = serde_json::Value),
    ),
)]
async fn call_base_slash(
    ctx: State<Context>,
    env: Env,
    names: ConnectionHeaders,
    request: Request,
) -> ApiResult<Response> {
    call(ctx, env, names, request).await
}

/// The proxy, calling the base URL itself.
#[utoipa::path(
    method(get, post, put, patch, delete, head, options, trace),
    path = "/proxy",
    tag = "proxy",
    security(("secret_key" = [])),
    params(ProxyHeaders),
    responses(
        (status = "default", description = "The provider's answer, status, headers and body unchanged; or an error of Lasso's (`ErrorBody`) when the call could not be made", body = serde_json::Value),
    ),
)]
async fn call_base(
    ctx: State<Context>,
    env: Env,
    names: ConnectionHeaders,
    request: Request,
) -> ApiResult<Response> {
    call(ctx, env, names, request).await
}

/// Calls the provider's API with the connection's credentials; `Nango-Proxy-<Name>` headers, `Content-Type` and `Accept` are passed on.
#[utoipa::path(
    method(get, post, put, patch, delete, head, options, trace),
    path = "/proxy/{*endpoint}",
    tag = "proxy",
    security(("secret_key" = [])),
    params(("endpoint" = String, Path, description = "The provider's path, after its base URL"), ProxyHeaders),
    responses(
        (status = "default", description = "The provider's answer, status, headers and body unchanged; or an error of Lasso's (`ErrorBody`) when the call could not be made", body = serde_json::Value),
    ),
)]
async fn call(
    State(ctx): State<Context>,
    Env(env): Env,
    names: ConnectionHeaders,
    request: Request,
) -> ApiResult<Response> {
    let (parts, body) = request.into_parts();
    if matches!(parts.method, Method::CONNECT | Method::TRACE) {
        return Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::MethodNotAllowed,
            format!("the proxy does not pass on {} requests", parts.method),
        ));
    }
    let headers = &parts.headers;
    // The raw path, still percent-encoded: decoding it would change what the provider sees.
    let path = parts.uri.path().strip_prefix("/proxy").unwrap_or_default();
    let endpoint = match parts.uri.query() {
        Some(query) => format!("{path}?{query}"),
        None => path.to_string(),
    };
    let mut request = ProxyRequest::new(parts.method.clone(), endpoint);
    request.headers = forwarded(headers);
    request.retries = match text(headers, "Retries")? {
        Some(v) => v
            .parse()
            .map_err(|_| ApiError::invalid("Retries", "expected a whole number of retries"))?,
        None => 0,
    };
    request.retry_on = match text(headers, "Retry-On")? {
        Some(v) => retry_on(v)?,
        None => Vec::new(),
    };
    // Nango's client always sends the header, empty when there is no override.
    request.base_url_override = text(headers, "Base-Url-Override")?.map(str::to_string);
    request.body = read_body(body).await?;

    let connection = connections::get(
        &ctx.db,
        &ctx.cipher,
        env.id,
        &names.provider_config_key,
        &names.connection_id,
    )
    .await?;
    let mut log = OperationLog::start(
        env.id,
        OperationKind::Proxy,
        Some(&names.provider_config_key),
        Some(&names.connection_id),
        None,
    );
    log.scrub(connection.secrets());
    let started = std::time::Instant::now();
    let sent = proxy::send(&ctx, connection, &request).await;
    // The endpoint as the caller wrote it: the base URL and injected credentials stay out.
    let (state, status, error) = match &sent {
        Ok(r) if r.status().is_success() || r.status().is_redirection() => {
            (OperationState::Success, Some(r.status().as_u16()), None)
        }
        Ok(r) => (OperationState::Failed, Some(r.status().as_u16()), None),
        Err(e) => (OperationState::Failed, None, Some(e.to_string())),
    };
    log.message(
        if state == OperationState::Success { Level::Info } else { Level::Warn },
        MessageKind::Http,
        &format!(
            "{} {} -> {}",
            request.method,
            request.endpoint,
            status.map_or("no answer".to_string(), |s| s.to_string())
        ),
        serde_json::json!({"type": "http", "method": request.method.as_str(), "endpoint": request.endpoint,
                           "status": status, "duration_ms": started.elapsed().as_millis() as u64}),
    );
    ctx.logs.submit(log.finish(state, error.as_deref())).await;
    Ok(stream(sent?))
}

/// `Retry-On: 409, 423`.
fn retry_on(value: &str) -> ApiResult<Vec<u16>> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<u16>()
                .ok()
                .filter(|c| (100..=599).contains(c))
                .ok_or_else(|| {
                    ApiError::invalid(
                        "Retry-On",
                        format!("`{s}` is not an HTTP status; expected a list such as `409,423`"),
                    )
                })
        })
        .collect()
}

/// The headers for the provider: `Content-Type` and `Accept`, then `Nango-Proxy-<Name>` as
/// `<Name>` over them. Nothing else of the caller's goes on (not their `Authorization`).
fn forwarded(headers: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::new();
    for name in [axum::http::header::CONTENT_TYPE, axum::http::header::ACCEPT] {
        for value in headers.get_all(&name) {
            out.append(name.clone(), value.clone());
        }
    }
    let mut replaced = Vec::new();
    for (name, value) in headers {
        let Some(target) = name.as_str().strip_prefix(FORWARD_PREFIX) else {
            continue;
        };
        let Ok(target) = HeaderName::from_bytes(target.as_bytes()) else {
            continue;
        };
        if !replaced.contains(&target) {
            out.remove(&target);
            replaced.push(target.clone());
        }
        out.append(target, value.clone());
    }
    out
}

/// The request body, held whole (retries send it again) up to the proxy's limit.
async fn read_body(body: Body) -> ApiResult<axum::body::Bytes> {
    let mut stream = body.into_data_stream();
    let mut buf = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                ErrorCode::InvalidBody,
                "the request body could not be read",
            )
        })?;
        if buf.len() + chunk.len() > MAX_REQUEST_BODY {
            return Err(Error::PayloadTooLarge(format!(
                "the request body is over {MAX_REQUEST_BODY} bytes, the most the proxy takes"
            ))
            .into());
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.into())
}

/// The provider's response as ours: same status and headers (less hop-by-hop ones), the body
/// streamed through as it arrives.
fn stream(response: reqwest::Response) -> Response {
    let status = response.status();
    let mut headers = response.headers().clone();
    let hop: Vec<HeaderName> = headers
        .keys()
        .filter(|n| proxy::is_hop_by_hop(n))
        .cloned()
        .collect();
    for name in hop {
        headers.remove(name);
    }
    let mut out = Response::new(Body::from_stream(response.bytes_stream()));
    *out.status_mut() = status;
    *out.headers_mut() = headers;
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn forwards_only_what_it_should() {
        let mut h = HeaderMap::new();
        h.insert(
            "authorization",
            HeaderValue::from_static("Bearer secret-key"),
        );
        h.insert("content-type", HeaderValue::from_static("application/json"));
        h.insert("accept", HeaderValue::from_static("*/*"));
        h.insert("nango-proxy-accept", HeaderValue::from_static("text/csv"));
        h.insert("nango-proxy-x-custom", HeaderValue::from_static("1"));
        h.insert("connection-id", HeaderValue::from_static("c"));
        h.insert("retries", HeaderValue::from_static("3"));
        let out = forwarded(&h);
        assert_eq!(out.len(), 3, "{out:?}");
        assert_eq!(out["content-type"], "application/json");
        assert_eq!(out["accept"], "text/csv");
        assert_eq!(out["x-custom"], "1");
    }

    #[test]
    fn parses_retry_on() {
        assert_eq!(retry_on("409, 423,").unwrap(), vec![409, 423]);
        assert!(retry_on("409,abc").is_err());
        assert!(retry_on("42").is_err());
    }
}
