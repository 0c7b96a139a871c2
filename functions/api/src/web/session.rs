//! Browser sessions. Signing in exchanges an environment's secret key for a random session
//! token in an HttpOnly, SameSite=Strict cookie scoped to the UI's path (stored by
//! `lasso_services::web_sessions`). Each session has its own CSRF token, which every
//! state-changing form carries. The JSON API never reads this cookie.

use axum::extract::FromRequestParts;
use axum::http::header::{COOKIE, HOST};
use axum::http::request::Parts;
use chrono::{DateTime, Duration, Utc};
use lasso_services::Context;
use lasso_services::EnvironmentId;
use lasso_services::environments::Environment;
use lasso_services::web_sessions::{self, WebSession};
use subtle::ConstantTimeEq;

use super::WebError;

/// The session cookie's name.
pub const COOKIE_NAME: &str = "lasso_session";
/// The sign-in form's own CSRF cookie (double submit: there is no session yet).
pub const SIGNIN_COOKIE: &str = "lasso_signin";
/// The path every cookie of the dashboard is scoped to.
pub const COOKIE_PATH: &str = "/ui";
/// How long a session lasts.
pub const LIFETIME: Duration = Duration::hours(12);

/// A signed-in browser: its environment and its CSRF token.
#[derive(Debug, Clone)]
pub struct Session {
    pub environment: Environment,
    pub csrf: String,
    pub expires_at: DateTime<Utc>,
    stored: WebSession,
}

impl Session {
    pub fn csrf_matches(&self, token: &str) -> bool {
        bool::from(self.csrf.as_bytes().ct_eq(token.as_bytes()))
    }

    pub async fn from_parts(parts: &mut Parts, ctx: &Context) -> Result<Self, WebError> {
        let next = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| "/ui/".into());
        let signed_out = || WebError::SignedOut { next: next.clone() };
        let token = cookie(parts, COOKIE_NAME).ok_or_else(signed_out)?;
        let stored = web_sessions::find(&ctx.db, &token)
            .await?
            .ok_or_else(signed_out)?;
        Ok(Session {
            environment: stored.environment.clone(),
            csrf: stored.csrf_token.clone(),
            expires_at: stored.expires_at,
            stored,
        })
    }

    /// Ends this session (sign out).
    pub async fn end(&self, ctx: &Context) -> Result<(), WebError> {
        Ok(web_sessions::end(&ctx.db, &self.stored).await?)
    }
}

impl FromRequestParts<Context> for Session {
    type Rejection = WebError;

    async fn from_request_parts(parts: &mut Parts, ctx: &Context) -> Result<Self, Self::Rejection> {
        Self::from_parts(parts, ctx).await
    }
}

/// Starts a session for the environment; returns the token for the cookie.
pub async fn create(ctx: &Context, environment_id: EnvironmentId) -> Result<String, WebError> {
    Ok(web_sessions::create(&ctx.db, environment_id, LIFETIME).await?)
}

/// The value of cookie `name` in the request, if any.
pub fn cookie(parts: &Parts, name: &str) -> Option<String> {
    cookie_in(&parts.headers, name)
}

/// The value of cookie `name` in `headers`, if any.
pub fn cookie_in(headers: &axum::http::HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
        .filter(|v| !v.is_empty())
}

/// Whether the browser reached us over plain HTTP on a loopback host (`lasso dev`), where a
/// `Secure` cookie would never be sent back. Anywhere else cookies are `Secure`.
pub fn plain_http_localhost(parts: &Parts) -> bool {
    let forwarded_https = parts
        .headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|p| p.eq_ignore_ascii_case("https"));
    let host = parts
        .headers
        .get(HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or_default(),
        None => host.split(':').next().unwrap_or_default(),
    };
    let loopback = name == "localhost"
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    loopback && !forwarded_https
}

/// A `Set-Cookie` value for the dashboard: HttpOnly, SameSite=Strict, Path=/ui, Secure unless
/// on plain-http localhost; `max_age` zero deletes it.
pub fn set_cookie(name: &str, value: &str, max_age: Duration, secure: bool) -> String {
    format!(
        "{name}={value}; Path={COOKIE_PATH}; Max-Age={}; HttpOnly; SameSite=Strict{}",
        max_age.num_seconds().max(0),
        if secure { "; Secure" } else { "" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Request;

    fn parts(host: &str, proto: Option<&str>) -> Parts {
        let mut builder = Request::builder().uri("/ui/").header(HOST, host);
        if let Some(p) = proto {
            builder = builder.header("x-forwarded-proto", p);
        }
        builder.body(()).unwrap().into_parts().0
    }

    #[test]
    fn cookies_are_secure_except_on_plain_http_loopback() {
        assert!(plain_http_localhost(&parts("127.0.0.1:3003", None)));
        assert!(plain_http_localhost(&parts("localhost:3003", None)));
        assert!(plain_http_localhost(&parts("[::1]:3003", None)));
        assert!(!plain_http_localhost(&parts(
            "127.0.0.1:3003",
            Some("https")
        )));
        assert!(!plain_http_localhost(&parts(
            "abc.execute-api.us-east-1.amazonaws.com",
            None
        )));
        assert!(!plain_http_localhost(&parts(
            "localhost.evil.example",
            None
        )));
    }

    #[test]
    fn the_cookie_is_http_only_strict_and_scoped_to_the_ui() {
        let c = set_cookie(COOKIE_NAME, "t", LIFETIME, true);
        assert_eq!(
            c,
            "lasso_session=t; Path=/ui; Max-Age=43200; HttpOnly; SameSite=Strict; Secure"
        );
        assert!(!set_cookie(COOKIE_NAME, "t", LIFETIME, false).contains("Secure"));
    }

    #[test]
    fn cookies_are_read_by_exact_name() {
        let p = Request::builder()
            .header(COOKIE, "x_lasso_session=a; lasso_session=b")
            .body(())
            .unwrap()
            .into_parts()
            .0;
        assert_eq!(cookie(&p, COOKIE_NAME).as_deref(), Some("b"));
    }
}
