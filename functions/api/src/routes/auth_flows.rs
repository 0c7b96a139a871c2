//! The auth endpoints Nango's frontend SDK calls: `GET /oauth/connect/:providerConfigKey` (a
//! redirect to the provider), `GET /oauth/callback` (an HTML page for the popup window),
//! `POST /oauth2/auth/:providerConfigKey` (client credentials), `POST
//! /api-auth/api-key/:providerConfigKey` and `POST /api-auth/basic/:providerConfigKey`.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::header::{
    ACCEPT, CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, LOCATION, REFERER,
    REFERRER_POLICY, SET_COOKIE,
};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use lasso_services::Context;
use lasso_services::auth_flows::{Outcome, Request, direct, oauth2};
use lasso_services::auth_sockets::MAX_CLIENT_ID_LEN;
use lasso_services::crypto::random_token;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use utoipa::ToSchema;
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouterExt};
use utoipa_axum::routes;

use crate::auth::AuthCaller;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{Body, Query};

pub fn router() -> OpenApiRouter<Context> {
    // The SDK calls the last three with `fetch` from the app's own origin.
    let cors = super::cors::session_token_endpoints;
    OpenApiRouter::new()
        .routes(routes!(oauth_connect))
        .routes(routes!(oauth_callback))
        .routes(routes!(client_credentials).layer(cors()))
        .routes(routes!(api_key).layer(cors()))
        .routes(routes!(basic).layer(cors()))
}

/// The query string of an auth endpoint, as Nango's frontend SDK writes it.
struct AuthQuery {
    request: Request,
    user_scope: Option<String>,
    authorization_params: BTreeMap<String, String>,
    ws_client_id: Option<String>,
}

fn bracketed<'a>(key: &'a str, name: &str) -> Option<&'a str> {
    key.strip_prefix(name)?
        .strip_prefix('[')?
        .strip_suffix(']')
        .filter(|k| !k.is_empty())
}

/// Reads `connection_id`, `params[...]` and, for OAuth (`oauth`), `user_scope` and
/// `authorization_params[...]` and `ws_client_id` (the SDK's socket, told the outcome). The
/// credential parameters were read by [`AuthCaller`].
fn auth_query(
    provider_config_key: String,
    pairs: Vec<(String, String)>,
    oauth: bool,
) -> ApiResult<AuthQuery> {
    let mut out = AuthQuery {
        request: Request {
            provider_config_key,
            connection_id: None,
            params: Map::new(),
        },
        user_scope: None,
        authorization_params: BTreeMap::new(),
        ws_client_id: None,
    };
    for (key, value) in pairs {
        match key.as_str() {
            "connection_id" => out.request.connection_id = Some(value),
            "connect_session_token" | "public_key" => {}
            "ws_client_id" => {
                if value.is_empty() || value.len() > MAX_CLIENT_ID_LEN {
                    return Err(ApiError::invalid(
                        "ws_client_id",
                        format!("use the id the socket sent (1 to {MAX_CLIENT_ID_LEN} characters)"),
                    ));
                }
                out.ws_client_id = Some(value);
            }
            "user_scope" if oauth => out.user_scope = Some(value),
            other => {
                if let Some(name) = bracketed(other, "params") {
                    out.request
                        .params
                        .insert(name.to_string(), Value::String(value));
                } else if let Some(name) =
                    bracketed(other, "authorization_params").filter(|_| oauth)
                {
                    out.authorization_params.insert(name.to_string(), value);
                } else {
                    return Err(ApiError::invalid(
                        other,
                        "unknown query parameter for this endpoint",
                    ));
                }
            }
        }
    }
    Ok(out)
}

fn outcome_json(outcome: &Outcome) -> Json<Value> {
    Json(json!({
        "providerConfigKey": outcome.provider_config_key,
        "connectionId": outcome.connection_id,
    }))
}

fn wants_html(headers: &HeaderMap) -> bool {
    headers
        .get(ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"))
}

/// Starts an OAuth flow: redirects the browser to the provider's authorization page.
#[utoipa::path(
    get,
    path = "/oauth/connect/{provider_config_key}",
    tag = "auth",
    security(("connect_session_token_query" = []), ("connect_session_token" = []), ("secret_key" = [])),
    params(("provider_config_key" = String, Path, description = "The integration's unique key"), ("connection_id" = Option<String>, Query, description = "The connection id to create or replace (secret key callers)"), ("user_scope" = Option<String>, Query), ("ws_client_id" = Option<String>, Query, description = "The frontend SDK's socket, told the outcome")),
    responses(
        (status = 302, description = "To the provider's authorization URL"),
        (status = "default", description = "An error: an HTML page for a browser (`Accept: text/html`), else `ErrorBody`", content((ErrorBody = "application/json"), (String = "text/html"))),
    ),
)]
async fn oauth_connect(
    State(ctx): State<Context>,
    Path(provider_config_key): Path<String>,
    headers: HeaderMap,
    caller: Result<AuthCaller, ApiError>,
    query: Result<Query<Vec<(String, String)>>, ApiError>,
) -> Response {
    let mut socket = None;
    let opener = opener_origin(&headers);
    let started = async {
        let AuthCaller(caller) = caller?;
        let Query(pairs) = query?;
        let q = auth_query(provider_config_key, pairs, true)?;
        socket.clone_from(&q.ws_client_id);
        let started = oauth2::authorize(
            &ctx,
            &caller,
            oauth2::Authorize {
                request: q.request,
                user_scope: q.user_scope,
                authorization_params: q.authorization_params,
                ws_client_id: q.ws_client_id,
                opener_origin: opener.clone(),
            },
        )
        .await?;
        Ok::<_, ApiError>(started)
    }
    .await;
    match started {
        Ok(started) => {
            let secure = if ctx.config.public_url.starts_with("https://") {
                "; Secure"
            } else {
                ""
            };
            // Lax: the provider's redirect back is a top-level navigation from another site,
            // which Lax cookies go with (Strict ones do not).
            let cookie = format!(
                "{}={}; Path=/oauth/callback; HttpOnly; SameSite=Lax; Max-Age={}{secure}",
                started.cookie.name,
                started.cookie.value,
                oauth2::SESSION_LIFETIME.num_seconds()
            );
            (
                StatusCode::FOUND,
                [(LOCATION, started.url), (SET_COOKIE, cookie)],
            )
                .into_response()
        }
        Err(e) => {
            let parts = error_parts(e).await;
            if let Some(id) = &socket {
                ctx.auth_sockets
                    .error(id, &parts.code, &parts.message)
                    .await;
            }
            // A browser opened this URL in a popup: tell it (and the opener) on a page.
            if wants_html(&headers) {
                error_page(parts.status, &parts.code, &parts.message, opener.as_deref())
            } else {
                (
                    parts.status,
                    [(CONTENT_TYPE, "application/json")],
                    parts.body,
                )
                    .into_response()
            }
        }
    }
}

/// The provider's redirect back: finishes the OAuth flow and answers the popup's HTML page.
#[utoipa::path(
    get,
    path = "/oauth/callback",
    tag = "auth",
    params(("code" = Option<String>, Query), ("state" = Option<String>, Query), ("error" = Option<String>, Query), ("error_description" = Option<String>, Query)),
    responses(
        (status = 200, description = "The page that tells the opener the outcome and closes", content_type = "text/html", body = String),
        (status = "default", description = "An error: an HTML page for a browser (`Accept: text/html`), else `ErrorBody`", content((ErrorBody = "application/json"), (String = "text/html"))),
    ),
)]
async fn oauth_callback(
    State(ctx): State<Context>,
    headers: HeaderMap,
    query: Result<Query<Vec<(String, String)>>, ApiError>,
) -> Response {
    let (finished, cookie_name) = match query {
        Ok(Query(pairs)) => {
            let query: BTreeMap<String, String> = pairs.into_iter().collect();
            let cookie_name = query
                .get("state")
                .map(|state| oauth2::binding_cookie_name(state));
            let binding = cookie_name
                .as_deref()
                .and_then(|name| crate::web::session::cookie_in(&headers, name));
            (
                oauth2::finish(&ctx, &query, binding.as_deref()).await,
                cookie_name,
            )
        }
        Err(e) => {
            let parts = error_parts(e).await;
            return error_page(parts.status, &parts.code, &parts.message, None);
        }
    };
    let mut page = page_for(&ctx, finished).await;
    // The flow is over (or was never this browser's): its cookie has no further use.
    if let Some(name) = cookie_name
        && let Ok(value) =
            format!("{name}=; Path=/oauth/callback; HttpOnly; SameSite=Lax; Max-Age=0").parse()
    {
        page.headers_mut().append(SET_COOKIE, value);
    }
    page
}

/// The callback page for how the flow ended; the SDK's socket, if any, is told too.
async fn page_for(ctx: &Context, finished: oauth2::Finished) -> Response {
    let opener = finished.opener_origin.as_deref();
    match finished.result {
        Ok(outcome) => {
            if let Some(id) = &finished.ws_client_id {
                ctx.auth_sockets
                    .success(id, &outcome.provider_config_key, &outcome.connection_id)
                    .await;
            }
            auth_page(
                StatusCode::OK,
                "Connection successful",
                &format!(
                    "Connection `{}` of integration `{}` is ready. You can close this window.",
                    outcome.connection_id, outcome.provider_config_key
                ),
                json!({
                    "type": "nango_oauth_callback_success",
                    "payload": {
                        "providerConfigKey": outcome.provider_config_key,
                        "connectionId": outcome.connection_id,
                    },
                }),
                opener,
            )
        }
        Err(e) => {
            let parts = error_parts(e.into()).await;
            if let Some(id) = &finished.ws_client_id {
                ctx.auth_sockets
                    .error(id, &parts.code, &parts.message)
                    .await;
            }
            error_page(parts.status, &parts.code, &parts.message, opener)
        }
    }
}

/// The origin (`scheme://host[:port]`) of the page that sent the browser here, from its
/// `Referer`: the opener of the popup the flow runs in. Nothing when there is none (a
/// `no-referrer` policy) or it is not an http(s) URL.
fn opener_origin(headers: &HeaderMap) -> Option<String> {
    let referer = headers.get(REFERER)?.to_str().ok()?;
    let url = reqwest::Url::parse(referer).ok()?;
    if !matches!(url.scheme(), "http" | "https") {
        return None;
    }
    let origin = url.origin().ascii_serialization();
    (origin.len() <= 300 && origin != "null").then_some(origin)
}

/// The JSON answer for an error, and its code and message.
struct ErrorParts {
    status: StatusCode,
    code: String,
    message: String,
    body: axum::body::Bytes,
}

async fn error_parts(e: ApiError) -> ErrorParts {
    let response = e.into_response();
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), 64 * 1024)
        .await
        .unwrap_or_default();
    let json: Value = serde_json::from_slice(&body).unwrap_or_default();
    let text = |key: &str| json["error"][key].as_str().unwrap_or_default().to_string();
    ErrorParts {
        status,
        code: text("code"),
        message: text("message"),
        body,
    }
}

/// The error page: the status, code and message the JSON answer would have.
fn error_page(status: StatusCode, code: &str, message: &str, opener: Option<&str>) -> Response {
    auth_page(
        status,
        "Connection failed",
        message,
        json!({
            "type": "nango_oauth_callback_error",
            "payload": {"message": message, "errorType": code},
        }),
        opener,
    )
}

fn escape_html(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// JSON that is safe inside a `<script>` element.
fn script_json(value: &Value) -> String {
    value
        .to_string()
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
        .replace('\u{2028}', "\\u2028")
        .replace('\u{2029}', "\\u2029")
}

/// The page the OAuth popup ends on. Like Nango's, it posts `message` to the window that opened
/// it (and on the `nango-oauth-callback` broadcast channel, which only Lasso's own pages hear),
/// so a frontend learns the outcome without a websocket, and closes itself after a success.
/// Unlike Nango's, it posts only to `opener`, the origin the flow was started from; with none
/// known the opener is told nothing (any page could be the opener).
fn auth_page(
    status: StatusCode,
    title: &str,
    text: &str,
    message: Value,
    opener: Option<&str>,
) -> Response {
    let nonce = random_token("");
    let opener = script_json(&opener.map_or(Value::Null, |o| Value::String(o.to_string())));
    let html = format!(
        r#"<!doctype html>
<html>
  <head>
    <meta charset="utf-8">
    <title>{title}</title>
  </head>
  <body style="font-family: sans-serif; max-width: 36em; margin: 4em auto; padding: 0 1em;">
    <h1>{title}</h1>
    <p>{text}</p>
    <script nonce="{nonce}">
      (function () {{
        var message = {message};
        var opener = {opener};
        try {{ if (window.opener && opener) {{ window.opener.postMessage(message, opener); }} }} catch (e) {{}}
        try {{
          if (typeof BroadcastChannel !== 'undefined') {{
            var channel = new BroadcastChannel('nango-oauth-callback');
            channel.postMessage(message);
            channel.close();
          }}
        }} catch (e) {{}}
        if (message.type === 'nango_oauth_callback_success') {{
          setTimeout(function () {{ window.close(); }}, 500);
        }}
      }})();
    </script>
  </body>
</html>
"#,
        title = escape_html(title),
        text = escape_html(text),
        message = script_json(&message),
    );
    (
        status,
        [
            (CONTENT_TYPE, "text/html; charset=utf-8".to_string()),
            (CACHE_CONTROL, "no-store".to_string()),
            // The callback URL carries the authorization code: send it nowhere.
            (REFERRER_POLICY, "no-referrer".to_string()),
            (
                CONTENT_SECURITY_POLICY,
                format!("default-src 'none'; script-src 'nonce-{nonce}'"),
            ),
        ],
        html,
    )
        .into_response()
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct ClientCredentialsBody {
    client_id: Option<String>,
    client_secret: Option<String>,
}

/// Creates a connection from OAuth2 client credentials.
#[utoipa::path(
    post,
    path = "/oauth2/auth/{provider_config_key}",
    tag = "auth",
    security(("connect_session_token_query" = []), ("connect_session_token" = []), ("secret_key" = [])),
    params(("provider_config_key" = String, Path, description = "The integration's unique key"), ("connection_id" = Option<String>, Query, description = "The connection id to create or replace (secret key callers)")),
    request_body = ClientCredentialsBody,
    responses(
        (status = 200, description = "`{\"providerConfigKey\", \"connectionId\"}`", body = Object),
        (status = "default", description = "An error", body = ErrorBody),
    ),
)]
async fn client_credentials(
    State(ctx): State<Context>,
    Path(provider_config_key): Path<String>,
    AuthCaller(caller): AuthCaller,
    Query(pairs): Query<Vec<(String, String)>>,
    Body(body): Body<ClientCredentialsBody>,
) -> ApiResult<Json<Value>> {
    let q = auth_query(provider_config_key, pairs, false)?;
    let outcome = direct::client_credentials(
        &ctx,
        &caller,
        &q.request,
        direct::ClientCredentials {
            client_id: body.client_id,
            client_secret: body.client_secret,
        },
    )
    .await?;
    Ok(outcome_json(&outcome))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct ApiKeyBody {
    #[serde(rename = "apiKey")]
    api_key: String,
}

/// Creates a connection from an API key (checked against the provider when it has a check).
#[utoipa::path(
    post,
    path = "/api-auth/api-key/{provider_config_key}",
    tag = "auth",
    security(("connect_session_token_query" = []), ("connect_session_token" = []), ("secret_key" = [])),
    params(("provider_config_key" = String, Path, description = "The integration's unique key"), ("connection_id" = Option<String>, Query, description = "The connection id to create or replace (secret key callers)")),
    request_body = ApiKeyBody,
    responses(
        (status = 200, description = "`{\"providerConfigKey\", \"connectionId\"}`", body = Object),
        (status = "default", description = "An error", body = ErrorBody),
    ),
)]
async fn api_key(
    State(ctx): State<Context>,
    Path(provider_config_key): Path<String>,
    AuthCaller(caller): AuthCaller,
    Query(pairs): Query<Vec<(String, String)>>,
    Body(body): Body<ApiKeyBody>,
) -> ApiResult<Json<Value>> {
    let q = auth_query(provider_config_key, pairs, false)?;
    let outcome = direct::api_key(&ctx, &caller, &q.request, &body.api_key).await?;
    Ok(outcome_json(&outcome))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct BasicBody {
    username: String,
    password: String,
}

/// Creates a connection from a username and password.
#[utoipa::path(
    post,
    path = "/api-auth/basic/{provider_config_key}",
    tag = "auth",
    security(("connect_session_token_query" = []), ("connect_session_token" = []), ("secret_key" = [])),
    params(("provider_config_key" = String, Path, description = "The integration's unique key"), ("connection_id" = Option<String>, Query, description = "The connection id to create or replace (secret key callers)")),
    request_body = BasicBody,
    responses(
        (status = 200, description = "`{\"providerConfigKey\", \"connectionId\"}`", body = Object),
        (status = "default", description = "An error", body = ErrorBody),
    ),
)]
async fn basic(
    State(ctx): State<Context>,
    Path(provider_config_key): Path<String>,
    AuthCaller(caller): AuthCaller,
    Query(pairs): Query<Vec<(String, String)>>,
    Body(body): Body<BasicBody>,
) -> ApiResult<Json<Value>> {
    let q = auth_query(provider_config_key, pairs, false)?;
    let outcome = direct::basic(&ctx, &caller, &q.request, &body.username, &body.password).await?;
    Ok(outcome_json(&outcome))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_reads_nangos_bracketed_params() {
        let pairs = [
            ("connection_id", "c1"),
            ("params[subdomain]", "acme"),
            ("authorization_params[prompt]", "consent"),
            ("user_scope", "chat:write"),
            ("ws_client_id", "ws"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .to_vec();
        let q = auth_query("gh".into(), pairs.clone(), true).unwrap();
        assert_eq!(q.request.connection_id.as_deref(), Some("c1"));
        assert_eq!(q.request.params["subdomain"], "acme");
        assert_eq!(q.authorization_params["prompt"], "consent");
        assert_eq!(q.user_scope.as_deref(), Some("chat:write"));

        // OAuth-only parameters are refused elsewhere, naming the parameter.
        let err = auth_query("gh".into(), pairs, false).err().unwrap();
        assert!(
            err.to_string().contains("authorization_params[prompt]"),
            "{err}"
        );
        let err = auth_query("gh".into(), vec![("params[]".into(), "x".into())], false)
            .err()
            .unwrap();
        assert!(err.to_string().contains("params[]"), "{err}");
    }

    #[test]
    fn page_text_and_script_data_are_escaped() {
        assert_eq!(
            escape_html("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        let s = script_json(&json!({"m": "</script><b>&\u{2028}"}));
        assert!(!s.contains("</script>") && !s.contains('<') && !s.contains('&'));
        assert!(s.contains("\\u2028"));
    }
}
