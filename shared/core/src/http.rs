//! The HTTP clients Lasso sends tenants' requests with, built once per process on the outbound
//! policy and kept in the service `Context`: one for token endpoints, credential checks and
//! webhooks, one for proxied calls, one for scripts' `uncontrolledFetch`.

use std::sync::Arc;
use std::time::Duration;

use crate::outbound::{self, Policy, Redirects};
use crate::{Error, Result};

/// Most redirects a proxied call (all on its own origin) or an `uncontrolledFetch` follows.
const MAX_REDIRECTS: usize = 10;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const USER_AGENT: &str = concat!("lasso/", env!("CARGO_PKG_VERSION"));

/// The client for token endpoints, credential checks and outgoing webhooks. It follows no
/// redirects: token requests and credential checks carry secrets, which a redirect would take
/// to another host.
pub fn client(policy: Arc<Policy>) -> Result<outbound::Client> {
    build(policy, Redirects::None)
}

/// The client for proxied calls: no overall timeout, so large responses can stream; redirects
/// followed only while they stay on the same origin, so credentials never follow a redirect
/// elsewhere.
pub fn proxy_client(policy: Arc<Policy>) -> Result<outbound::Client> {
    build(policy, Redirects::SameOrigin(MAX_REDIRECTS))
}

/// The client for scripts' `uncontrolledFetch`: any URL, redirects followed anywhere the policy
/// permits (each one checked before it is followed), no credentials of Lasso's added.
pub fn fetch_client(policy: Arc<Policy>) -> Result<outbound::Client> {
    build(policy, Redirects::Any(MAX_REDIRECTS))
}

fn build(policy: Arc<Policy>, redirects: Redirects) -> Result<outbound::Client> {
    outbound::Client::new(
        policy,
        outbound::Options {
            redirects,
            connect_timeout: CONNECT_TIMEOUT,
            user_agent: USER_AGENT.into(),
        },
    )
    .map_err(|e| Error::Internal(format!("building the HTTP client: {e}")))
}
