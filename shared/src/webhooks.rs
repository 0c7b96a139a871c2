//! Outgoing webhooks (auth events, sync results, async action results), signed the way Nango's
//! clients verify them: `X-Nango-Hmac-Sha256: hex(HMAC-SHA256(signing secret, body))`.
//!
//! Deliveries go through an outbox table: [`emit`] stores the exact body, tries it once at
//! once, and [`deliver_due`] (run by the scheduler) retries failures with exponential backoff
//! and jitter until they succeed or run out of attempts. Nothing is lost when a Lambda freezes.

use std::time::Duration;

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use rand::Rng;
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use sha2::Sha256;
use sqlx::FromRow;
use uuid::Uuid;

use crate::Result;
use crate::connections::Connection;
use crate::context::Context;
use crate::environments;

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

/// Nango's auth webhook body (`type: "auth"`). `operation` is `creation`, `override` or
/// `refresh`; `error` is `(type, description)` for a failure.
pub fn auth_event(
    environment_name: &str,
    connection: &Connection,
    auth_mode: &str,
    operation: &str,
    error: Option<(&str, &str)>,
) -> Value {
    let mut body = json!({
        "from": FROM,
        "type": "auth",
        "connectionId": connection.connection_id,
        "authMode": auth_mode,
        "providerConfigKey": connection.provider_config_key,
        "provider": connection.provider,
        "environment": environment_name,
        "operation": operation,
        "success": error.is_none(),
        "tags": connection.tags,
    });
    if let Some(user) = &connection.end_user {
        body["endUser"] = json!({
            "endUserId": user.id,
            "organizationId": user.organization.as_ref().map(|o| o.id.clone()),
            "endUserEmail": user.email,
            "tags": user.tags.clone().unwrap_or_default(),
        });
    }
    if let Some((kind, description)) = error {
        body["error"] = json!({"type": kind, "description": description});
    }
    body
}

/// Emits the auth webhook for `connection` to its environment (or its webhook URL override).
pub async fn emit_auth(
    ctx: &Context,
    connection: &Connection,
    operation: &str,
    error: Option<(&str, &str)>,
) -> Result<Option<Uuid>> {
    let environment = environments::find_by_id(&ctx.db, connection.environment_id)
        .await?
        .ok_or_else(|| crate::Error::not_found("environment"))?;
    let auth_mode = connection.credentials.type_name();
    let event = auth_event(&environment.name, connection, auth_mode, operation, error);
    emit(
        ctx,
        connection.environment_id,
        connection.webhook_url_override.as_deref(),
        &event,
    )
    .await
}

#[derive(FromRow)]
struct Delivery {
    id: Uuid,
    environment_id: i64,
    url: String,
    body: String,
    attempts: i32,
    max_attempts: i32,
}

/// Queues `event` for the environment's webhook URL (or `url_override`) and tries to send it
/// once right away. Returns the delivery id, or `None` when no URL is configured.
pub async fn emit(
    ctx: &Context,
    environment_id: i64,
    url_override: Option<&str>,
    event: &Value,
) -> Result<Option<Uuid>> {
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
    attempt(ctx, &delivery).await?;
    Ok(Some(delivery.id))
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

/// Sends one delivery and records the outcome. True when the receiver accepted it.
async fn attempt(ctx: &Context, delivery: &Delivery) -> Result<bool> {
    let config =
        environments::webhook_config(&ctx.db, &ctx.cipher, delivery.environment_id).await?;
    let mut request = ctx
        .http
        .post(&delivery.url)
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
    let outcome = match request.send().await {
        Ok(r) if r.status().is_success() => Ok(r.status().as_u16()),
        Ok(r) => Err((
            Some(r.status().as_u16()),
            format!("receiver answered {}", r.status()),
        )),
        Err(e) => Err((
            None,
            format!("could not reach the receiver: {}", e.without_url()),
        )),
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
    fn retry_delays_grow_with_jitter_and_cap() {
        for attempt in 1..20 {
            let d = retry_delay(attempt).num_seconds();
            let base = (10i64 << (attempt.clamp(1, 12) - 1)).min(3600);
            assert!(d >= base && d <= base + base / 5, "{attempt}: {d}");
        }
    }
}
