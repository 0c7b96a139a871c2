//! Outgoing webhooks (auth events, sync results, async action results), signed the way Nango's
//! clients verify them: `X-Nango-Hmac-Sha256: hex(HMAC-SHA256(signing secret, body))`.
//!
//! Deliveries go through an outbox table: [`emit`] stores the exact body, tries it once at
//! once, and [`deliver_due`] (run by the scheduler) retries failures with exponential backoff
//! and jitter until they succeed or run out of attempts. Nothing is lost when a Lambda freezes.

use crate::EnvironmentId;
use std::time::Duration;

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use rand::Rng;
use secrecy::ExposeSecret;
use serde_json::{Map, Value, json};
use sha2::Sha256;
use sqlx::FromRow;
use uuid::Uuid;

use crate::Result;
use crate::connections::{Connection, EndUser};
use crate::context::Context;
use crate::environments::{self, Environment};

pub const SIGNATURE_HEADER: &str = "X-Nango-Hmac-Sha256";
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a claimed delivery stays out of other workers' reach while it is being sent.
const LEASE_SECS: i64 = 60;

/// `hex(HMAC-SHA256(secret, body))`.
pub fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// Seconds to wait after the `attempt`-th failure: 10 s, 20 s, 40 s, ... capped at an hour,
/// plus up to 20 % jitter so a recovering receiver is not hit by a thundering herd.
pub fn retry_delay(attempt: i32) -> chrono::Duration {
    let base = (10i64 << (attempt.clamp(1, 12) - 1)).min(3600);
    let jitter = rand::rng().random_range(0..=base / 5);
    chrono::Duration::seconds(base + jitter)
}

/// What webhooks say they come from; Nango's value, so receivers written for Nango accept them.
pub const FROM: &str = "nango";

/// Whether an auth created a connection, replaced the credentials of an existing one, or
/// refreshed them (Nango's `AuthOperationType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthOperation {
    Creation,
    Override,
    Refresh,
}

impl AuthOperation {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthOperation::Creation => "creation",
            AuthOperation::Override => "override",
            AuthOperation::Refresh => "refresh",
        }
    }
}

/// Why an auth attempt failed, as the webhook reports it (Nango's `ErrorPayload`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthFailure {
    /// e.g. `invalid_callback`, `token_exchange_failed`, `refresh_token_external_error`.
    pub kind: &'static str,
    pub description: String,
}

/// An auth event for the environment's webhook (Nango's `NangoAuthWebhookBody`).
#[derive(Debug, Clone)]
pub struct AuthEvent<'a> {
    pub environment: &'a Environment,
    pub provider_config_key: &'a str,
    pub provider: &'a str,
    pub auth_mode: &'a str,
    pub connection_id: &'a str,
    pub operation: AuthOperation,
    pub end_user: Option<&'a EndUser>,
    pub tags: &'a Map<String, Value>,
    /// Where to send it instead of the environment's webhook URL.
    pub webhook_url_override: Option<&'a str>,
    /// `None` for a success.
    pub failure: Option<AuthFailure>,
}

impl<'a> AuthEvent<'a> {
    /// The successful `operation` on a stored connection.
    pub fn for_connection(
        environment: &'a Environment,
        connection: &'a Connection,
        auth_mode: &'a str,
        operation: AuthOperation,
    ) -> Self {
        Self {
            environment,
            provider_config_key: &connection.provider_config_key,
            provider: &connection.provider,
            auth_mode,
            connection_id: &connection.connection_id,
            operation,
            end_user: connection.end_user.as_ref(),
            tags: &connection.tags,
            webhook_url_override: connection.webhook_url_override.as_deref(),
            failure: None,
        }
    }
}

/// The webhook body Nango's clients expect for `event`.
fn auth_body(event: &AuthEvent<'_>) -> Value {
    let mut body = json!({
        // Nango's receivers tell its own webhooks from forwarded ones by this field.
        "from": FROM,
        "type": "auth",
        "connectionId": event.connection_id,
        "providerConfigKey": event.provider_config_key,
        "authMode": event.auth_mode,
        "provider": event.provider,
        "environment": event.environment.name,
        "operation": event.operation.as_str(),
        "success": event.failure.is_none(),
    });
    if !event.tags.is_empty() {
        body["tags"] = Value::Object(event.tags.clone());
    }
    if let Some(user) = event.end_user {
        let mut end_user = json!({
            "endUserId": user.id,
            "endUserEmail": user.email,
            "tags": user.tags.clone().unwrap_or_default(),
        });
        if let Some(org) = &user.organization {
            end_user["organizationId"] = Value::String(org.id.clone());
        }
        body["endUser"] = end_user;
    }
    if let Some(failure) = &event.failure {
        body["error"] = json!({"type": failure.kind, "description": failure.description});
    }
    body
}

/// Records the auth event as an operation and sends its webhook through the outbox ([`emit`]).
/// Failures of either are logged, not returned: the connection is stored (or its refresh
/// failed) by then, and the caller's answer must say so.
pub async fn emit_auth(ctx: &Context, event: &AuthEvent<'_>) {
    let mut log = crate::logs::OperationLog::start(
        event.environment.id,
        crate::logs::OperationKind::Auth,
        Some(event.provider_config_key),
        Some(event.connection_id),
        None,
    );
    log.set_meta("operation", json!(event.operation.as_str()));
    log.set_meta("auth_mode", json!(event.auth_mode));
    let (state, error) = match &event.failure {
        None => (crate::logs::OperationState::Success, None),
        Some(f) => (
            crate::logs::OperationState::Failed,
            Some(f.description.as_str()),
        ),
    };
    ctx.logs.submit(log.finish(state, error)).await;
    if let Err(e) = emit(
        ctx,
        event.environment.id,
        event.webhook_url_override,
        &auth_body(event),
    )
    .await
    {
        tracing::error!(error = %e, connection = %event.connection_id, "could not queue the auth webhook");
    }
}

#[derive(FromRow)]
struct Delivery {
    id: Uuid,
    environment_id: EnvironmentId,
    url: String,
    body: String,
    attempts: i32,
    max_attempts: i32,
}

/// Queues `event` for the environment's webhook URL (or `url_override`) and tries to send it
/// once right away. Returns the delivery id, or `None` when no URL is configured.
pub async fn emit(
    ctx: &Context,
    environment_id: EnvironmentId,
    url_override: Option<&str>,
    event: &Value,
) -> Result<Option<Uuid>> {
    let Some(delivery) = enqueue(ctx, environment_id, url_override, event).await? else {
        return Ok(None);
    };
    attempt(ctx, &delivery).await?;
    Ok(Some(delivery.id))
}

/// Like [`emit`], but the first attempt runs in the background, for callers that must answer
/// quickly (a provider waiting for its webhook to be acknowledged). The delivery is stored
/// before this returns; if the process stops before the attempt ends, the scheduler retries
/// it once its lease runs out.
pub async fn emit_soon(
    ctx: &Context,
    environment_id: EnvironmentId,
    url_override: Option<&str>,
    event: &Value,
) -> Result<Option<Uuid>> {
    let Some(delivery) = enqueue(ctx, environment_id, url_override, event).await? else {
        return Ok(None);
    };
    let id = delivery.id;
    let ctx = ctx.clone();
    // In the caller's span: the attempt's log lines keep its request id.
    tokio::spawn(tracing::Instrument::in_current_span(async move {
        if let Err(e) = attempt(&ctx, &delivery).await {
            tracing::warn!(delivery = %delivery.id, error = %e, "webhook attempt failed");
        }
    }));
    Ok(Some(id))
}

/// Stores the delivery as claimed by its first attempt; `None` when no URL is configured.
async fn enqueue(
    ctx: &Context,
    environment_id: EnvironmentId,
    url_override: Option<&str>,
    event: &Value,
) -> Result<Option<Delivery>> {
    let configured = environments::webhook_config(&ctx.db, &ctx.cipher, environment_id).await?;
    let Some(url) = url_override
        .map(str::to_string)
        .or_else(|| configured.as_ref().and_then(|c| c.url.clone()))
    else {
        return Ok(None);
    };
    let delivery = Delivery {
        id: Uuid::now_v7(),
        environment_id,
        url,
        body: event.to_string(),
        attempts: 1,
        max_attempts: 8,
    };
    // Inserted as already claimed (attempt 1, leased), so the scheduler leaves it alone while
    // this first attempt runs.
    sqlx::query(
        "INSERT INTO webhooks.deliveries (id, environment_id, url, body, attempts, max_attempts,
            next_attempt_at)
         VALUES ($1, $2, $3, $4, 1, $5, now() + make_interval(secs => $6))",
    )
    .bind(delivery.id)
    .bind(environment_id)
    .bind(&delivery.url)
    .bind(&delivery.body)
    .bind(delivery.max_attempts)
    .bind(LEASE_SECS as f64)
    .execute(&ctx.db)
    .await?;
    Ok(Some(delivery))
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DeliveryReport {
    pub attempted: usize,
    pub delivered: usize,
}

/// Retries due deliveries (claimed with SKIP LOCKED, so several schedulers can run).
pub async fn deliver_due(ctx: &Context, limit: i64) -> Result<DeliveryReport> {
    let due: Vec<Delivery> = sqlx::query_as(
        "WITH due AS MATERIALIZED (
            SELECT id FROM webhooks.deliveries
            WHERE state = 'PENDING' AND next_attempt_at <= now()
            ORDER BY next_attempt_at LIMIT $1
            FOR UPDATE SKIP LOCKED
         )
         UPDATE webhooks.deliveries d
         SET attempts = d.attempts + 1, next_attempt_at = now() + make_interval(secs => $2)
         FROM due WHERE d.id = due.id
         RETURNING d.id, d.environment_id, d.url, d.body, d.attempts, d.max_attempts",
    )
    .bind(limit)
    .bind(LEASE_SECS as f64)
    .fetch_all(&ctx.db)
    .await?;
    let mut report = DeliveryReport {
        attempted: due.len(),
        ..Default::default()
    };
    for delivery in &due {
        if attempt(ctx, delivery).await? {
            report.delivered += 1;
        }
    }
    Ok(report)
}

/// Refuses a webhook URL (`field`: `webhook_url`, `webhook_url_override`) that the outbound
/// policy would refuse when a delivery is sent, so a bad URL is an error when it is set rather
/// than failed deliveries later. Its format is the store's to check.
pub async fn check_destination(ctx: &Context, field: &str, url: Option<&str>) -> Result<()> {
    let Some(parsed) = url
        .filter(|u| !u.is_empty())
        .and_then(|u| url::Url::parse(u).ok())
    else {
        return Ok(());
    };
    ctx.outbound
        .check_stored_url(&parsed)
        .await
        .map_err(|refused| crate::Error::invalid(field, refused.to_string()))
}

/// Sends one delivery and records the outcome. True when the receiver accepted it.
async fn attempt(ctx: &Context, delivery: &Delivery) -> Result<bool> {
    let config =
        environments::webhook_config(&ctx.db, &ctx.cipher, delivery.environment_id).await?;
    let sent = match ctx.http.post(&delivery.url) {
        Ok(request) => {
            let mut request = request
                .timeout(ATTEMPT_TIMEOUT)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(delivery.body.clone());
            if let Some(config) = &config {
                request = request.header(
                    SIGNATURE_HEADER,
                    sign(
                        config.signing_secret.expose_secret(),
                        delivery.body.as_bytes(),
                    ),
                );
            }
            request
                .send()
                .await
                .map_err(|e| match crate::outbound::refusal(&e) {
                    Some(refused) => refused.to_string(),
                    None => format!("could not reach the receiver: {}", e.without_url()),
                })
        }
        Err(refused) => Err(refused.to_string()),
    };
    let outcome = match sent {
        Ok(r) if r.status().is_success() => Ok(r.status().as_u16()),
        Ok(r) => Err((
            Some(r.status().as_u16()),
            format!("receiver answered {}", r.status()),
        )),
        Err(error) => Err((None, error)),
    };
    match outcome {
        Ok(status) => {
            sqlx::query(
                "UPDATE webhooks.deliveries SET state = 'DELIVERED', delivered_at = now(),
                    last_status = $2, last_error = NULL WHERE id = $1",
            )
            .bind(delivery.id)
            .bind(i32::from(status))
            .execute(&ctx.db)
            .await?;
            Ok(true)
        }
        Err((status, error)) => {
            let exhausted = delivery.attempts >= delivery.max_attempts;
            let next: DateTime<Utc> = Utc::now() + retry_delay(delivery.attempts);
            sqlx::query(
                "UPDATE webhooks.deliveries
                 SET state = CASE WHEN $2 THEN 'FAILED'::webhooks.delivery_state ELSE 'PENDING' END,
                     next_attempt_at = $3, last_status = $4, last_error = $5
                 WHERE id = $1",
            )
            .bind(delivery.id)
            .bind(exhausted)
            .bind(next)
            .bind(status.map(i32::from))
            .bind(&error)
            .execute(&ctx.db)
            .await?;
            tracing::warn!(delivery = %delivery.id, attempt = delivery.attempts, exhausted, %error, "webhook delivery failed");
            Ok(false)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_the_documented_scheme() {
        // echo -n '{"a":1}' | openssl dgst -sha256 -hmac secret
        assert_eq!(
            sign("secret", br#"{"a":1}"#),
            "aa9e2e3575f5d7098b6caccd790888c36d5fdb63342a73bada2d6a51747a8494"
        );
    }

    #[test]
    fn auth_webhook_has_nangos_shape() {
        let env = Environment {
            id: EnvironmentId(1),
            uuid: uuid::Uuid::nil(),
            name: "prod".into(),
        };
        let user: EndUser = serde_json::from_value(
            json!({"id": "u1", "email": "u@x.io", "organization": {"id": "o1"}}),
        )
        .unwrap();
        let tags = Map::new();
        let mut event = AuthEvent {
            environment: &env,
            provider_config_key: "gh",
            provider: "github",
            auth_mode: "OAUTH2",
            connection_id: "c1",
            operation: AuthOperation::Creation,
            end_user: Some(&user),
            tags: &tags,
            webhook_url_override: None,
            failure: None,
        };
        assert_eq!(
            auth_body(&event),
            json!({"from": "nango", "type": "auth", "connectionId": "c1", "providerConfigKey": "gh",
                   "authMode": "OAUTH2", "provider": "github", "environment": "prod",
                   "operation": "creation", "success": true,
                   "endUser": {"endUserId": "u1", "endUserEmail": "u@x.io", "organizationId": "o1",
                               "tags": {}}})
        );
        event.failure = Some(AuthFailure {
            kind: "invalid_callback",
            description: "denied".into(),
        });
        event.end_user = None;
        let body = auth_body(&event);
        assert_eq!(body["success"], false);
        assert_eq!(
            body["error"],
            json!({"type": "invalid_callback", "description": "denied"})
        );
        assert!(body.get("endUser").is_none());
    }

    #[test]
    fn retry_delays_grow_with_jitter_and_cap() {
        for attempt in 1..20 {
            let d = retry_delay(attempt).num_seconds();
            let base = (10i64 << (attempt.clamp(1, 12) - 1)).min(3600);
            assert!(d >= base && d <= base + base / 5, "{attempt}: {d}");
        }
    }
}
