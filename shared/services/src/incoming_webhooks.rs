//! Webhooks from providers: `POST /webhook/:environmentUuid/:providerConfigKey`. The URL is
//! the credential (it names the environment by its uuid); no secret key is involved.
//!
//! A webhook is routed by the integration's `custom.webhook_routing` (checked whenever an
//! integration is created or updated):
//!
//! ```json
//! {"webhook_routing": {
//!     "connection_config": {"body_path": "installation.id", "key": "installation_id"},
//!     "event": {"header": "X-GitHub-Event"},
//!     "signature": {"header": "X-Hub-Signature-256", "prefix": "sha256=", "encoding": "hex"}
//! }}
//! ```
//!
//! - Connections: at most one of `connection_id` (the value is the connection id),
//!   `connection_config` or `metadata` (the value equals the connection's `key`, a dotted path
//!   into that object). The value comes from a header or a dotted path into the JSON body
//!   (`items.0.id` indexes arrays); numbers and strings compare by their text. Every matching
//!   connection gets the webhook; no rule, or no value in the payload, matches none.
//! - Event: the event type, from a header or a body path. A deployed sync of the integration
//!   runs (as a webhook task, with the payload as input) for each matched connection when its
//!   `webhook_subscriptions` hold the event type, or `*`.
//! - Signature (optional): `HMAC-SHA256(integration webhook secret, raw body)`, hex or base64,
//!   after `prefix`, in `header`. When configured, a webhook without a valid one is refused.
//!   Without it, the provider's catalog entry may declare its scheme
//!   (`lasso: {webhook_signature: github | stripe | slack | shopify}`); with a webhook secret
//!   set, such webhooks are verified (Stripe's and Slack's signed timestamps within five
//!   minutes, so a captured webhook cannot be replayed later).
//! - `custom.require_webhook_signatures: true` refuses every webhook whose signature was not
//!   verified (no scheme, or no webhook secret).
//!
//! When the integration has `forward_webhooks`, the payload also goes to the environment's
//! webhook URL as Nango's `forward` webhook (one per matched connection, or one without a
//! connection id when none matched).

use crate::EnvironmentId;
use base64::Engine;
use hmac::{Hmac, Mac};
use http::HeaderMap;
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use sha2::Sha256;
use uuid::Uuid;

use crate::connections::{self, WebhookMatch};
use crate::context::Context;
use crate::integrations::Integration;
use crate::integrations::webhook_routing::{Encoding, REQUIRE_SIGNATURES_KEY, Signature};
use crate::logs::{Level, MessageKind, OperationKind, OperationLog, OperationState};
use crate::providers::hosts::WebhookScheme;
use crate::queue::{FunctionPayload, Payload};
use crate::queue::{NewTask, TaskKind, tasks};
use crate::scripts::store;
use crate::{Error, ErrorCode, Result, dispatcher, environments, integrations, webhooks};

/// Largest webhook body accepted (Lambda takes requests up to 6 MB).
pub const MAX_BODY_BYTES: usize = 5 * 1024 * 1024;

/// The value at a dotted path (`a.b.0.c`) of the body, as text: strings as they are, numbers
/// and booleans written out; anything else (absent, null, objects, arrays) is no value.
fn body_value(body: &Value, path: &str) -> Option<String> {
    let mut at = body;
    for segment in path.split('.') {
        at = match at {
            Value::Object(map) => map.get(segment)?,
            Value::Array(items) => items.get(segment.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    match at {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn read(
    headers: &HeaderMap,
    body: &Value,
    header: &Option<String>,
    body_path: &Option<String>,
) -> Option<String> {
    match (header, body_path) {
        (Some(name), _) => headers
            .get(name.as_str())
            .and_then(|v| v.to_str().ok())
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty()),
        (None, Some(path)) => body_value(body, path),
        (None, None) => None,
    }
}

/// Checks `signature` over the raw body with the integration's webhook secret.
fn verify(
    signature: &Signature,
    secret: Option<&str>,
    headers: &HeaderMap,
    raw: &[u8],
) -> Result<()> {
    let refuse = |why: &str| Err(Error::Unauthorized(format!("webhook refused: {why}")));
    let Some(secret) = secret else {
        return refuse("the integration checks signatures but has no webhook secret");
    };
    let Some(given) = headers
        .get(signature.header.as_str())
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().strip_prefix(signature.prefix.as_str()))
    else {
        return refuse(&format!("no `{}` signature", signature.header));
    };
    let decoded = match signature.encoding {
        Encoding::Hex => hex::decode(given).ok(),
        Encoding::Base64 => base64::engine::general_purpose::STANDARD.decode(given).ok(),
    };
    let mac = mac_of(secret, &[raw]);
    match decoded {
        // Constant-time comparison.
        Some(bytes) if mac.verify_slice(&bytes).is_ok() => Ok(()),
        _ => refuse("the signature does not match"),
    }
}

/// How far a signed timestamp may be from now (Stripe's and Slack's own default).
const REPLAY_WINDOW_SECS: i64 = 5 * 60;

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

fn mac_of(secret: &str, parts: &[&[u8]]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    for part in parts {
        mac.update(part);
    }
    mac
}

/// Checks a webhook signed the way the provider's catalog entry declares, at time `now`.
fn verify_scheme(
    scheme: WebhookScheme,
    secret: &str,
    headers: &HeaderMap,
    raw: &[u8],
    now: i64,
) -> Result<()> {
    let refuse = |why: String| Err(Error::Unauthorized(format!("webhook refused: {why}")));
    let missing = |name: &str| refuse(format!("no `{name}` signature"));
    let matches = |mac: Hmac<Sha256>, given: Option<Vec<u8>>| {
        given.is_some_and(|bytes| mac.verify_slice(&bytes).is_ok())
    };
    let fresh = |t: i64| (now - t).abs() <= REPLAY_WINDOW_SECS;
    let stale = || {
        refuse(format!(
            "the signed timestamp is more than {} minutes from now (a replay?)",
            REPLAY_WINDOW_SECS / 60
        ))
    };
    let mismatch = || refuse("the signature does not match".to_string());
    match scheme {
        WebhookScheme::Github => {
            let name = "X-Hub-Signature-256";
            let Some(given) = header(headers, name).and_then(|v| v.strip_prefix("sha256=")) else {
                return missing(name);
            };
            if matches(mac_of(secret, &[raw]), hex::decode(given).ok()) {
                Ok(())
            } else {
                mismatch()
            }
        }
        WebhookScheme::Shopify => {
            let name = "X-Shopify-Hmac-Sha256";
            let Some(given) = header(headers, name) else {
                return missing(name);
            };
            let decoded = base64::engine::general_purpose::STANDARD.decode(given).ok();
            if matches(mac_of(secret, &[raw]), decoded) {
                Ok(())
            } else {
                mismatch()
            }
        }
        WebhookScheme::Stripe => {
            let name = "Stripe-Signature";
            let Some(value) = header(headers, name) else {
                return missing(name);
            };
            let mut timestamp = None;
            let mut candidates = Vec::new();
            for part in value.split(',') {
                match part.trim().split_once('=') {
                    Some(("t", t)) => timestamp = t.parse::<i64>().ok(),
                    Some(("v1", sig)) => candidates.push(sig),
                    _ => {}
                }
            }
            let Some(t) = timestamp else {
                return refuse(format!("`{name}` has no timestamp `t=`"));
            };
            let signed = format!("{t}.");
            let ok = candidates.iter().any(|sig| {
                matches(
                    mac_of(secret, &[signed.as_bytes(), raw]),
                    hex::decode(sig).ok(),
                )
            });
            match (ok, fresh(t)) {
                (false, _) => mismatch(),
                (true, false) => stale(),
                (true, true) => Ok(()),
            }
        }
        WebhookScheme::Slack => {
            let name = "X-Slack-Signature";
            let Some(given) = header(headers, name).and_then(|v| v.strip_prefix("v0=")) else {
                return missing(name);
            };
            let Some(ts) = header(headers, "X-Slack-Request-Timestamp") else {
                return refuse("no `X-Slack-Request-Timestamp`".to_string());
            };
            let Ok(t) = ts.parse::<i64>() else {
                return refuse("`X-Slack-Request-Timestamp` is not a number".to_string());
            };
            let signed = format!("v0:{ts}:");
            let ok = matches(
                mac_of(secret, &[signed.as_bytes(), raw]),
                hex::decode(given).ok(),
            );
            match (ok, fresh(t)) {
                (false, _) => mismatch(),
                (true, false) => stale(),
                (true, true) => Ok(()),
            }
        }
    }
}

/// Verifies the webhook as the integration's routing or the provider's catalog entry says;
/// returns whether a signature was verified (false: none to check). A bad signature, or none
/// when the integration requires one, is an error.
fn check_signature(
    ctx: &Context,
    integration: &Integration,
    signature: Option<&Signature>,
    require: bool,
    headers: &HeaderMap,
    raw: &[u8],
) -> Result<bool> {
    let secret = integration.webhook_secret(&ctx.cipher)?;
    let secret = secret.as_ref().map(|s| s.expose_secret());
    if let Some(signature) = signature {
        verify(signature, secret, headers, raw)?;
        return Ok(true);
    }
    let scheme = ctx
        .providers
        .get(&integration.provider)
        .and_then(|p| p.lasso.webhook_signature);
    let why_not = match (scheme, secret) {
        (Some(scheme), Some(secret)) => {
            verify_scheme(scheme, secret, headers, raw, chrono::Utc::now().timestamp())?;
            return Ok(true);
        }
        (Some(_), None) => "the integration has no webhook secret to verify it with",
        (None, _) => {
            "the provider's catalog entry declares no signature scheme \
             (`lasso.webhook_signature`) and the integration's routing none \
             (`custom.webhook_routing.signature`)"
        }
    };
    if require {
        return Err(Error::Unauthorized(format!(
            "webhook refused: the integration requires verified signatures \
             (custom.{REQUIRE_SIGNATURES_KEY}), but {why_not}"
        )));
    }
    Ok(false)
}

/// What a webhook led to (for logs and tests).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Received {
    pub event: Option<String>,
    /// The matched connections' ids.
    pub connections: Vec<String>,
    /// Webhook tasks queued: one per matched connection and subscribed sync.
    pub tasks: Vec<Uuid>,
    /// Forward deliveries queued.
    pub forwarded: usize,
    /// Whether its signature was verified (false: there was none to check).
    pub signature_verified: bool,
}

impl Received {
    /// One line for the operation log.
    pub fn summary(&self) -> String {
        format!(
            "event `{}`: {} connection(s) matched, {} webhook task(s) queued, {} forwarded",
            self.event.as_deref().unwrap_or("-"),
            self.connections.len(),
            self.tasks.len(),
            self.forwarded
        )
    }
}

/// Routes one webhook: `unknown_environment` / `unknown_provider_config` (404) when the URL
/// names nothing, 401 for a bad signature, 400 for a body that is not JSON. Once the
/// environment is known, the webhook is an operation in its logs, refused or not (the tasks it
/// queues are operations of their own).
pub async fn receive(
    ctx: &Context,
    environment_uuid: &str,
    provider_config_key: &str,
    headers: &HeaderMap,
    raw: &[u8],
) -> Result<Received> {
    let unknown_environment = || Error::NotFound {
        code: ErrorCode::UnknownEnvironment,
        message: format!("environment `{environment_uuid}` does not exist"),
    };
    let uuid: Uuid = environment_uuid
        .parse()
        .map_err(|_| unknown_environment())?;
    let environment = environments::find_by_uuid(&ctx.db, uuid)
        .await?
        .ok_or_else(unknown_environment)?;
    let mut log = OperationLog::start(
        environment.id,
        OperationKind::Webhook,
        Some(provider_config_key),
        None,
        None,
    );
    let routed = route(ctx, environment.id, provider_config_key, headers, raw).await;
    let (state, error) = match &routed {
        Ok(received) => {
            log.set_meta("event", json!(received.event));
            log.set_meta("connections", json!(received.connections));
            log.set_meta("task_ids", json!(received.tasks));
            log.set_meta("forwarded", json!(received.forwarded));
            log.set_meta("signature_verified", json!(received.signature_verified));
            log.message(
                Level::Info,
                MessageKind::Log,
                &received.summary(),
                Value::Null,
            );
            (OperationState::Success, None)
        }
        Err(e) => (OperationState::Failed, Some(e.to_string())),
    };
    ctx.logs.submit(log.finish(state, error.as_deref())).await;
    routed
}

async fn route(
    ctx: &Context,
    environment_id: EnvironmentId,
    provider_config_key: &str,
    headers: &HeaderMap,
    raw: &[u8],
) -> Result<Received> {
    let integration = integrations::get(&ctx.db, environment_id, provider_config_key).await?;
    let routing = integration.webhook_routing()?;
    let signature_verified = check_signature(
        ctx,
        &integration,
        routing.signature.as_ref(),
        routing.require_signatures,
        headers,
        raw,
    )?;
    let body: Value = serde_json::from_slice(raw)
        .map_err(|e| Error::invalid("body", format!("a webhook body must be JSON: {e}")))?;

    let event = routing
        .event
        .as_ref()
        .and_then(|s| read(headers, &body, &s.header, &s.body_path));
    let lookup = match (
        &routing.connection_id,
        &routing.connection_config,
        &routing.metadata,
    ) {
        (Some(s), _, _) => {
            read(headers, &body, &s.header, &s.body_path).map(|v| (WebhookMatch::ConnectionId, v))
        }
        (_, Some(s), _) => read(headers, &body, &s.header, &s.body_path)
            .map(|v| (WebhookMatch::Config(path(&s.key)), v)),
        (_, _, Some(s)) => read(headers, &body, &s.header, &s.body_path)
            .map(|v| (WebhookMatch::Metadata(path(&s.key)), v)),
        _ => None,
    };
    let matched = match lookup {
        Some((field, value)) => {
            connections::find_for_webhook(&ctx.db, integration.id, &field, &value).await?
        }
        None => Vec::new(),
    };

    let syncs: Vec<String> = store::list_active(&ctx.db, integration.id)
        .await?
        .into_iter()
        .filter(|f| {
            f.config.sync().is_some_and(|s| {
                s.webhook_subscriptions
                    .iter()
                    .any(|sub| sub == "*" || Some(sub) == event.as_ref())
            })
        })
        .map(|f| f.name)
        .collect();
    let new_tasks: Vec<NewTask> = matched
        .iter()
        .flat_map(|connection| {
            syncs.iter().map(|sync| {
                let payload = FunctionPayload {
                    integration: integration.unique_key.clone(),
                    connection_id: connection.clone(),
                    function: sync.clone(),
                    input: Some(body.clone()),
                    full: false,
                    last_sync_date: None,
                    async_caller: false,
                };
                NewTask::new(
                    environment_id,
                    TaskKind::Webhook,
                    sync.clone(),
                    Payload::Function(payload),
                )
            })
        })
        .collect();
    let queued = if new_tasks.is_empty() {
        Vec::new()
    } else {
        let ids = tasks::insert(&ctx.db, &new_tasks).await?;
        dispatcher::dispatch_now(ctx).await;
        ids
    };

    let mut forwarded = 0;
    if integration.forward_webhooks {
        let targets: Vec<Option<&str>> = if matched.is_empty() {
            vec![None]
        } else {
            matched.iter().map(|c| Some(c.as_str())).collect()
        };
        for connection in targets {
            let event = forward_body(&integration, connection, &body, signature_verified);
            if webhooks::emit_soon(ctx, environment_id, None, &event)
                .await?
                .is_some()
            {
                forwarded += 1;
            }
        }
    }
    Ok(Received {
        event,
        connections: matched,
        tasks: queued,
        forwarded,
        signature_verified,
    })
}

fn path(key: &str) -> Vec<String> {
    key.split('.').map(str::to_string).collect()
}

/// Nango's `NangoForwardWebhookBody`: `from` is the provider, as in Nango; Lasso adds
/// `signatureVerified` (whether the provider's signature was checked and held).
fn forward_body(
    integration: &Integration,
    connection_id: Option<&str>,
    payload: &Value,
    signature_verified: bool,
) -> Value {
    let mut body = json!({
        "from": integration.provider,
        "type": "forward",
        "providerConfigKey": integration.unique_key,
        "payload": payload,
        "signatureVerified": signature_verified,
    });
    if let Some(id) = connection_id {
        body["connectionId"] = Value::String(id.to_string());
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_paths_read_scalars_as_text() {
        let body = json!({"installation": {"id": 42}, "items": [{"type": "a"}], "ok": true,
                          "obj": {}, "none": null});
        assert_eq!(body_value(&body, "installation.id").as_deref(), Some("42"));
        assert_eq!(body_value(&body, "items.0.type").as_deref(), Some("a"));
        assert_eq!(body_value(&body, "ok").as_deref(), Some("true"));
        for missing in ["obj", "none", "items.1.type", "installation.id.x", "nope"] {
            assert_eq!(body_value(&body, missing), None, "{missing}");
        }
    }

    #[test]
    fn signatures_are_checked_in_hex_and_base64() {
        let raw = br#"{"a":1}"#;
        let mut headers = HeaderMap::new();
        // echo -n '{"a":1}' | openssl dgst -sha256 -hmac secret
        let hex = "aa9e2e3575f5d7098b6caccd790888c36d5fdb63342a73bada2d6a51747a8494";
        headers.insert("x-sig", format!("sha256={hex}").parse().unwrap());
        let sig = Signature {
            header: "X-Sig".into(),
            prefix: "sha256=".into(),
            encoding: Encoding::Hex,
        };
        assert!(verify(&sig, Some("secret"), &headers, raw).is_ok());
        assert!(verify(&sig, Some("other"), &headers, raw).is_err());
        assert!(verify(&sig, None, &headers, raw).is_err());
        assert!(verify(&sig, Some("secret"), &HeaderMap::new(), raw).is_err());
        let b64 = base64::engine::general_purpose::STANDARD.encode(hex::decode(hex).unwrap());
        headers.insert("x-sig", b64.parse().unwrap());
        let sig = Signature {
            header: "X-Sig".into(),
            prefix: String::new(),
            encoding: Encoding::Base64,
        };
        assert!(verify(&sig, Some("secret"), &headers, raw).is_ok());
    }
}
