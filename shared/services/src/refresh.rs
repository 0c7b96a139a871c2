//! Token refresh. A token that expires within [`REFRESH_WINDOW`] is refreshed before it is
//! returned or used. Refreshes are single-flight per connection across processes: the refresher
//! holds the connection's refresh lock and re-reads the credentials under it, so whoever waited
//! finds them fresh and does not call the provider again. Waiters poll for the lock and give
//! their pooled connection back between looks, so many callers of one expiring token cannot
//! starve other work of the pool. A failure marks the connection (its
//! `errors` show an auth error) and later attempts back off exponentially; after
//! [`MAX_REFRESH_FAILURES`] in a row only a forced refresh or a new authorization tries again.

use chrono::{DateTime, Duration, Utc};

use crate::connections::{self, Connection, Credentials, OAuth2Token};
use crate::context::Context;
use crate::oauth::{self, Client, Grant};
use crate::webhooks::{self, AuthEvent, AuthFailure, AuthOperation};
use crate::{Error, ErrorCode, Result, environments, integrations, providers};

pub const REFRESH_WINDOW: Duration = Duration::minutes(15);
pub const MAX_REFRESH_FAILURES: i32 = 5;

/// How often a caller waiting for another refresh looks again: from 25 ms, doubling, up to
/// 500 ms; after [`LOCK_WAIT_MAX`] it gives up (a token request times out after 30 s).
const LOCK_POLL_FIRST: std::time::Duration = std::time::Duration::from_millis(25);
const LOCK_POLL_MAX: std::time::Duration = std::time::Duration::from_millis(500);
const LOCK_WAIT_MAX: std::time::Duration = std::time::Duration::from_secs(45);

/// Wait before trying again after `failures` consecutive failed refreshes: 30 s, 1 min, 2 min,
/// ... capped at an hour.
pub fn backoff(failures: i32) -> Duration {
    let exp = failures.clamp(1, 8) - 1;
    Duration::seconds(30 * (1i64 << exp)).min(Duration::hours(1))
}

fn expires_soon(credentials: &Credentials, now: DateTime<Utc>) -> bool {
    credentials
        .expires_at()
        .is_some_and(|at| at - now <= REFRESH_WINDOW)
}

fn refreshable(credentials: &Credentials) -> bool {
    matches!(
        credentials,
        Credentials::OAuth2(_) | Credentials::OAuth2ClientCredentials { .. }
    )
}

/// The connection with credentials that are good for at least [`REFRESH_WINDOW`] (refreshing
/// them if needed), or with newly refreshed ones when `force` is set.
pub async fn fresh(ctx: &Context, connection: Connection, force: bool) -> Result<Connection> {
    if !refreshable(&connection.credentials)
        || !(force || expires_soon(&connection.credentials, Utc::now()))
    {
        return Ok(connection);
    }
    if !force && holding_off(&connection) {
        // Do not hammer a provider that keeps refusing; a still-valid token is still usable.
        return match connection.credentials.expires_at() {
            Some(at) if at > Utc::now() => Ok(connection),
            _ => Err(refresh_failed(&connection)),
        };
    }
    // Everything the token request needs is read before taking the lock: the lock holder must
    // not wait for a second pool connection while the waiters hold the others.
    let integration = integrations::get_by_id(&ctx.db, connection.integration_id).await?;
    let asked_at = Utc::now();
    let mut wait = LOCK_POLL_FIRST;
    let waited_since = tokio::time::Instant::now();
    let mut tx = loop {
        let mut tx = ctx.db.begin().await?;
        if connections::try_lock_for_refresh(&mut tx, connection.uuid).await? {
            break tx;
        }
        // Someone else is refreshing: give the connection back to the pool while waiting,
        // then look (without the lock) whether they are done.
        tx.rollback().await?;
        if waited_since.elapsed() > LOCK_WAIT_MAX {
            return Err(Error::Provider {
                code: ErrorCode::RefreshFailed,
                message: format!(
                    "another refresh of connection `{}` has not finished within {} s",
                    connection.connection_id,
                    LOCK_WAIT_MAX.as_secs()
                ),
            });
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(LOCK_POLL_MAX);
        let mut conn = ctx.db.acquire().await?;
        let seen = connections::get_by_uuid(&mut conn, &ctx.cipher, connection.uuid).await?;
        let refreshed = seen.last_refresh_at.is_some_and(|at| at >= asked_at);
        if refreshed || !(force || expires_soon(&seen.credentials, Utc::now())) {
            return Ok(seen);
        }
    };
    let current = connections::get_by_uuid(&mut tx, &ctx.cipher, connection.uuid).await?;
    let refreshed_meanwhile = current.last_refresh_at.is_some_and(|at| at >= asked_at);
    if refreshed_meanwhile || !(force || expires_soon(&current.credentials, Utc::now())) {
        tx.commit().await?;
        return Ok(current);
    }
    match request(ctx, &integration, &current).await {
        Ok(credentials) => {
            connections::update_credentials(&mut *tx, &ctx.cipher, &current, &credentials).await?;
            tx.commit().await?;
            tracing::info!(connection = %current.connection_id, "token refreshed");
            Ok(Connection {
                credentials,
                refresh_failures: 0,
                refresh_error: None,
                last_refresh_at: Some(Utc::now()),
                ..current
            })
        }
        Err(e) => {
            let message = e.to_string();
            let failures =
                connections::record_refresh_failure(&mut *tx, current.uuid, &message).await?;
            tx.commit().await?;
            tracing::warn!(connection = %current.connection_id, failures, "token refresh failed");
            // The caller gets the refresh error even when the webhook cannot be queued.
            match environments::find_by_id(&ctx.db, current.environment_id).await {
                Ok(Some(environment)) => {
                    let mut event = AuthEvent::for_connection(
                        &environment,
                        &current,
                        current.credentials.type_name(),
                        AuthOperation::Refresh,
                    );
                    event.failure = Some(AuthFailure {
                        kind: "refresh_token_external_error",
                        description: message,
                    });
                    webhooks::emit_auth(ctx, &event).await;
                }
                // A connection's environment exists (foreign key); only the lookup can fail.
                Ok(None) => {}
                Err(lookup) => {
                    tracing::warn!(error = %lookup, "could not queue the refresh-failed webhook")
                }
            }
            Err(e)
        }
    }
}

/// True while automatic refreshes wait: during the backoff after a failure, and for good once
/// [`MAX_REFRESH_FAILURES`] failed in a row (until a forced refresh or a new authorization).
fn holding_off(connection: &Connection) -> bool {
    if connection.refresh_failures >= MAX_REFRESH_FAILURES {
        return true;
    }
    connection.refresh_failures > 0
        && connection
            .last_refresh_failure_at
            .is_some_and(|at| Utc::now() < at + backoff(connection.refresh_failures))
}

fn refresh_failed(connection: &Connection) -> Error {
    Error::Provider {
        code: ErrorCode::RefreshFailed,
        message: format!(
            "refreshing the credentials of connection `{}` failed {} time(s) ({}); retrying later",
            connection.connection_id,
            connection.refresh_failures,
            connection
                .refresh_error
                .as_deref()
                .unwrap_or("unknown error")
        ),
    }
}

/// Asks the provider for new credentials.
async fn request(
    ctx: &Context,
    integration: &integrations::Integration,
    connection: &Connection,
) -> Result<Credentials> {
    let provider = ctx
        .providers
        .get(&connection.provider)
        .ok_or_else(|| Error::unknown_provider(&connection.provider))?;
    let template = provider
        .refresh_url
        .as_deref()
        .or_else(|| provider.resolved_token_url())
        .ok_or_else(|| Error::Provider {
            code: ErrorCode::RefreshFailed,
            message: format!("provider `{}` has no token URL", connection.provider),
        })?;
    let token_url = providers::hosts::render_checked(
        &connection.provider,
        provider,
        &integration.allowed_hosts()?,
        template,
        &connection.connection_config,
        &connection.credentials.as_template_values(),
    )?;
    match &connection.credentials {
        Credentials::OAuth2(current) => {
            let refresh_token =
                current
                    .refresh_token
                    .as_deref()
                    .ok_or_else(|| Error::Provider {
                        code: ErrorCode::RefreshFailed,
                        message: format!(
                            "connection `{}` has no refresh token; the user must authorize again",
                            connection.connection_id
                        ),
                    })?;
            let client_id = integration.client_id.clone().unwrap_or_default();
            let client_secret = integration.client_secret(&ctx.cipher)?;
            let client_secret = client_secret
                .as_ref()
                .map(secrecy::ExposeSecret::expose_secret)
                .unwrap_or_default();
            let token = oauth::request_token(
                &ctx.http,
                provider,
                &token_url,
                &Client {
                    id: &client_id,
                    secret: client_secret,
                },
                Grant::RefreshToken { refresh_token },
            )
            .await?;
            Ok(Credentials::OAuth2(OAuth2Token {
                access_token: token.access_token,
                // Providers that do not rotate refresh tokens omit them: keep the old one.
                refresh_token: token
                    .refresh_token
                    .or_else(|| current.refresh_token.clone()),
                expires_at: token.expires_at,
                raw: token.raw,
            }))
        }
        Credentials::OAuth2ClientCredentials {
            client_id,
            client_secret,
            raw,
            ..
        } => {
            let scopes = raw.get("scope").and_then(|s| s.as_str());
            let token = oauth::request_token(
                &ctx.http,
                provider,
                &token_url,
                &Client {
                    id: client_id,
                    secret: client_secret,
                },
                Grant::ClientCredentials { scopes },
            )
            .await?;
            Ok(Credentials::OAuth2ClientCredentials {
                token: token.access_token,
                expires_at: token.expires_at,
                client_id: client_id.clone(),
                client_secret: client_secret.clone(),
                raw: token.raw,
            })
        }
        other => Ok(other.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_caps() {
        assert_eq!(backoff(1), Duration::seconds(30));
        assert_eq!(backoff(2), Duration::seconds(60));
        assert_eq!(backoff(5), Duration::seconds(480));
        assert_eq!(backoff(50), Duration::hours(1));
    }
}
