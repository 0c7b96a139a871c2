//! Environment settings: secret keys and their rotation (the old key keeps working for a grace
//! period), the webhook URL and signing secret, the runner group.

use axum::Router;
use axum::extract::{Query, State};
use axum::response::Redirect;
use axum::routing::{get, post};
use lasso_services::{Context, environments, runner_groups};
use maud::{Markup, html};
use secrecy::ExposeSecret;
use serde::Deserialize;

use crate::web::form::{Posted, optional};
use crate::web::layout::{self, Section, csrf_field, optional_time, time};
use crate::web::{Session, WebError, WebResult};

pub fn router() -> Router<Context> {
    Router::new()
        .route("/ui/settings", get(show))
        .route("/ui/settings/rotate-key", post(rotate))
        .route("/ui/settings/webhook", post(webhook))
}

#[derive(Deserialize)]
struct ShowParams {
    done: Option<String>,
}

/// The settings page; `new_key` is shown once, right after a rotation.
async fn page(
    ctx: &Context,
    session: &Session,
    new_key: Option<&str>,
    done: Option<&str>,
) -> WebResult<Markup> {
    let env = session.environment.id;
    let keys = environments::keys(&ctx.db, env).await?;
    let webhook = environments::webhook_config(&ctx.db, &ctx.cipher, env).await?;
    let group = runner_groups::of_environments(&ctx.db, &[env])
        .await?
        .remove(&env);
    let now = chrono::Utc::now();
    Ok(layout::page(
        session,
        Section::Settings,
        "Settings",
        html! {
            h1 { "Settings of " (session.environment.name) }
            (layout::flash(done))
            @if let Some(key) = new_key {
                div.secret-once role="status" {
                    p { strong { "Your new secret key. " } "Copy it now: it is shown only once." }
                    pre #new-secret-key { (key) }
                }
            }
            h2 { "Secret keys" }
            table.keys {
                thead { tr { th { "Key" } th { "Created" } th { "Stops working" } } }
                tbody {
                    @for k in &keys {
                        tr {
                            td.mono { "…" (k.hint) }
                            td { (time(k.created_at)) }
                            td {
                                @match k.revoked_at {
                                    None => span.muted { "never" },
                                    Some(at) if at <= now => { "stopped " (time(at)) }
                                    Some(at) => { "in grace until " (time(at)) }
                                }
                            }
                        }
                    }
                }
            }
            form.stack.panel method="post" action="/ui/settings/rotate-key"
                data-confirm="Rotate the secret key? Clients must switch to the new key before the grace period ends." {
                (csrf_field(session))
                label { "Grace period in seconds (the current keys keep working this long)"
                    input type="number" name="grace_secs" min="0" max=(environments::MAX_ROTATION_GRACE_SECS) value="86400" required;
                }
                button type="submit" { "Rotate secret key" }
            }
            h2 { "Webhooks" }
            form.stack.panel method="post" action="/ui/settings/webhook" {
                (csrf_field(session))
                label { "Webhook URL (empty to turn webhooks off)"
                    input type="url" name="webhook_url" value=[webhook.as_ref().and_then(|w| w.url.as_deref())];
                }
                p.muted {
                    "Signing secret: "
                    @match &webhook {
                        Some(w) => span.mono { "whsec_…" (w.signing_secret.expose_secret().chars().rev().take(4).collect::<Vec<_>>().into_iter().rev().collect::<String>()) },
                        None => "created when a URL is first set",
                    }
                    ". Deliveries carry " code { "X-Nango-Hmac-Sha256" } "."
                }
                button type="submit" { "Save webhook URL" }
            }
            h2 { "Runner group" }
            div.panel {
                p { "Scripts of this environment run in group " strong.mono { (group.as_deref().unwrap_or(runner_groups::SHARED)) } "." }
                p.muted { "Moving an environment to its own group is deployment configuration (a stack parameter), set by the operator." }
                p.muted { "Session expires " (optional_time(Some(session.expires_at))) "." }
            }
        },
    ))
}

async fn show(
    State(ctx): State<Context>,
    session: Session,
    Query(p): Query<ShowParams>,
) -> WebResult<Markup> {
    page(
        &ctx,
        &session,
        None,
        layout::done_message(p.done.as_deref()),
    )
    .await
}

#[derive(Deserialize)]
struct RotateForm {
    grace_secs: String,
}

async fn rotate(
    State(ctx): State<Context>,
    Posted(session, form): Posted<RotateForm>,
) -> WebResult<Markup> {
    let grace: i64 = form
        .grace_secs
        .trim()
        .parse()
        .map_err(|_| WebError::invalid("grace_secs", "expected a whole number of seconds"))?;
    let key = environments::rotate_key(&ctx.db, session.environment.id, grace).await?;
    page(&ctx, &session, Some(&key), Some("Secret key rotated.")).await
}

#[derive(Deserialize)]
struct WebhookForm {
    webhook_url: Option<String>,
}

async fn webhook(
    State(ctx): State<Context>,
    Posted(session, form): Posted<WebhookForm>,
) -> WebResult<Redirect> {
    let url = optional(form.webhook_url);
    environments::set_webhook_url(&ctx.db, &ctx.cipher, session.environment.id, url.as_deref())
        .await?;
    Ok(Redirect::to("/ui/settings?done=webhook_saved"))
}
