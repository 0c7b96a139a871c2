//! The dashboard under `/ui/`: sign-in, logs, connections, integrations, settings.

mod connections;
mod integrations;
mod logs;
mod overview;
mod settings;

use axum::extract::{FromRequestParts, Query, State};
use axum::http::header::{
    ACCEPT, CACHE_CONTROL, CONTENT_SECURITY_POLICY, SET_COOKIE, X_FRAME_OPTIONS,
};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use chrono::Duration;
use lasso_services::Context;
use lasso_services::crypto::random_token;
use lasso_services::environments;
use maud::html;
use serde::Deserialize;
use subtle::ConstantTimeEq;

use super::form::Posted;
use super::layout;
use super::session::{self, COOKIE_NAME, SIGNIN_COOKIE};
use super::{WebError, WebResult};

pub fn router() -> Router<Context> {
    Router::new()
        .route("/", get(root))
        .route("/ui", get(|| async { Redirect::to("/ui/") }))
        .route("/ui/signin", get(signin_page).post(signin))
        .route("/ui/signout", post(signout))
        .merge(overview::router())
        .merge(logs::router())
        .merge(connections::router())
        .merge(integrations::router())
        .merge(settings::router())
        .layer(axum::middleware::map_response(page_headers))
        .merge(super::assets::router("/ui"))
}

/// Pages show keys once and data of one environment: no browser or proxy may keep them. And
/// no other site may frame them: a signed-in session's cookie goes with a framed page, so a
/// frame could trick a user into clicking its buttons (the Connect UI, which has no cookie,
/// may be framed).
async fn page_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("frame-ancestors 'none'"),
    );
    headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

/// `GET /`: the frontend SDK's auth socket when it asks for a WebSocket; a browser is sent to
/// the dashboard; anything else gets the API's not-found.
async fn root(
    State(ctx): State<Context>,
    ws: Result<
        axum::extract::ws::WebSocketUpgrade,
        axum::extract::ws::rejection::WebSocketUpgradeRejection,
    >,
    headers: HeaderMap,
    uri: axum::http::Uri,
) -> Response {
    if let Ok(ws) = ws {
        return crate::routes::auth_socket::upgrade(ctx, ws);
    }
    let wants_html = headers
        .get(ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/html"));
    if wants_html {
        Redirect::to("/ui/").into_response()
    } else {
        crate::routes::not_found(uri).await.into_response()
    }
}

/// Whether the request came over plain HTTP to a loopback host (no `Secure` cookies there).
struct PlainLocal(bool);

impl<S: Send + Sync> FromRequestParts<S> for PlainLocal {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(PlainLocal(session::plain_http_localhost(parts)))
    }
}

#[derive(Deserialize)]
struct NextParam {
    next: Option<String>,
    error: Option<String>,
}

/// Only a path of the dashboard itself: never another site.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with("/ui/") && !n.starts_with("//") && !n.contains('\\') => {
            n.to_string()
        }
        _ => "/ui/".into(),
    }
}

const SIGNIN_LIFETIME: Duration = Duration::minutes(30);

async fn signin_page(PlainLocal(plain): PlainLocal, Query(p): Query<NextParam>) -> Response {
    let nonce = random_token("");
    let next = safe_next(p.next.as_deref());
    let page = layout::bare(
        "Sign in",
        html! {
            main.narrow {
                div.panel {
                    h1 { "Sign in to Lasso" }
                    p.muted { "Paste the secret key of the environment you want to open. It is exchanged for a session; the browser never stores it." }
                    @if p.error.as_deref() == Some("unknown_key") {
                        p.error role="alert" { "That key opens no environment." }
                    }
                    form.stack method="post" action="/ui/signin" {
                        input type="hidden" name="_csrf" value=(nonce);
                        input type="hidden" name="next" value=(next);
                        label { "Secret key"
                            input type="password" name="secret_key" autocomplete="off" required autofocus;
                        }
                        button type="submit" { "Sign in" }
                    }
                }
            }
        },
    );
    let cookie = session::set_cookie(SIGNIN_COOKIE, &nonce, SIGNIN_LIFETIME, !plain);
    ([(SET_COOKIE, cookie)], page).into_response()
}

#[derive(Deserialize)]
struct SigninForm {
    #[serde(rename = "_csrf")]
    csrf: String,
    secret_key: String,
    next: Option<String>,
}

/// Exchanges the key for a session cookie; the sign-in form's CSRF token must match its
/// cookie (double submit), so another site cannot sign a browser into its own environment.
async fn signin(
    State(ctx): State<Context>,
    PlainLocal(plain): PlainLocal,
    parts: SigninCookie,
    Form(form): Form<SigninForm>,
) -> WebResult<Response> {
    let expected = parts.0.ok_or(WebError::Csrf)?;
    if !bool::from(expected.as_bytes().ct_eq(form.csrf.as_bytes())) {
        return Err(WebError::Csrf);
    }
    let next = safe_next(form.next.as_deref());
    let Some(env) = environments::find_by_secret_key(&ctx.db, form.secret_key.trim()).await? else {
        // A code, not a text: a crafted link cannot put its own words on the sign-in page.
        let target = format!(
            "/ui/signin?next={}&error=unknown_key",
            layout::query_escape(&next)
        );
        return Ok(Redirect::to(&target).into_response());
    };
    let token = session::create(&ctx, env.id).await?;
    let mut headers = HeaderMap::new();
    for cookie in [
        session::set_cookie(COOKIE_NAME, &token, session::LIFETIME, !plain),
        session::set_cookie(SIGNIN_COOKIE, "", Duration::zero(), !plain),
    ] {
        headers.append(
            SET_COOKIE,
            HeaderValue::from_str(&cookie).map_err(|_| WebError::Csrf)?,
        );
    }
    Ok((headers, Redirect::to(&next)).into_response())
}

struct SigninCookie(Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for SigninCookie {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(SigninCookie(session::cookie(parts, SIGNIN_COOKIE)))
    }
}

#[derive(Deserialize)]
struct Empty {}

async fn signout(
    State(ctx): State<Context>,
    PlainLocal(plain): PlainLocal,
    Posted(session, Empty {}): Posted<Empty>,
) -> WebResult<Response> {
    session.end(&ctx).await?;
    let cookie = session::set_cookie(COOKIE_NAME, "", Duration::zero(), !plain);
    Ok(([(SET_COOKIE, cookie)], Redirect::to("/ui/signin")).into_response())
}

#[cfg(test)]
mod tests {
    use super::safe_next;

    #[test]
    fn sign_in_returns_only_to_dashboard_paths() {
        assert_eq!(safe_next(Some("/ui/logs?q=x")), "/ui/logs?q=x");
        assert_eq!(safe_next(Some("https://evil.example/ui/")), "/ui/");
        assert_eq!(safe_next(Some("//evil.example")), "/ui/");
        assert_eq!(safe_next(Some("/ui/\\evil")), "/ui/");
        assert_eq!(safe_next(None), "/ui/");
    }
}
