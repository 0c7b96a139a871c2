//! The HTTP clients Lasso sends requests with, built once per process and kept in the service
//! `Context`: one for token endpoints and webhooks, one for proxied calls.

use std::time::Duration;

use crate::{Error, Result};

/// Most redirects a proxied call follows (all on its own origin).
const MAX_REDIRECTS: usize = 10;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const USER_AGENT: &str = concat!("lasso/", env!("CARGO_PKG_VERSION"));

/// The client for token endpoints, credential checks and outgoing webhooks.
pub fn client() -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .user_agent(USER_AGENT)
        .build()
        .map_err(|e| Error::Internal(format!("building the HTTP client: {e}")))
}

/// The client for proxied calls: no overall timeout, so large responses can stream; redirects
/// followed only while they stay on the same origin, so credentials never follow a redirect
/// elsewhere.
pub fn proxy_client() -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .user_agent(USER_AGENT)
        .redirect(reqwest::redirect::Policy::custom(|attempt| {
            let same_origin = attempt
                .previous()
                .first()
                .is_some_and(|first| first.origin() == attempt.url().origin());
            if !same_origin {
                attempt.stop()
            } else if attempt.previous().len() > MAX_REDIRECTS {
                attempt.error("too many redirects")
            } else {
                attempt.follow()
            }
        }))
        .build()
        .map_err(|e| Error::Internal(format!("building the proxy HTTP client: {e}")))
}
