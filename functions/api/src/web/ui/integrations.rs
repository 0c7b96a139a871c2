//! Integrations: list, create from the provider catalog (search by name and auth mode), edit
//! credentials (secrets masked), scopes and `custom` settings, delete; and the functions
//! deployed for each.

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::Redirect;
use axum::routing::{get, post};
use lasso_services::Context;
use lasso_services::integrations::{self, AppCredentials, IntegrationPatch, NewIntegration};
use lasso_services::scripts::store;
use maud::{Markup, html};
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::web::form::{Posted, optional};
use crate::web::layout::{self, Section, csrf_field, path_escape, time};
use crate::web::{Session, WebError, WebResult};

pub fn router() -> Router<Context> {
    Router::new()
        .route("/ui/integrations", get(list).post(create))
        .route("/ui/integrations/new", get(catalog))
        .route("/ui/integrations/{key}", get(show).post(update))
        .route("/ui/integrations/{key}/delete", post(delete))
}

fn integration_url(key: &str) -> String {
    format!("/ui/integrations/{}", path_escape(key))
}

async fn list(State(ctx): State<Context>, session: Session) -> WebResult<Markup> {
    let all = integrations::list(&ctx.db, session.environment.id).await?;
    Ok(layout::page(
        &session,
        Section::Integrations,
        "Integrations",
        html! {
            div.row { h1 { "Integrations" } a.button href="/ui/integrations/new" { "New integration" } }
            @if all.is_empty() {
                p.panel.muted { "No integrations yet." }
            } @else {
                table.integrations {
                    thead { tr { th { "Unique key" } th { "Provider" } th { "Auth mode" } th { "Created" } } }
                    tbody {
                        @for i in &all {
                            tr {
                                td { a href=(integration_url(&i.unique_key)) { (i.unique_key) } }
                                td { (i.display_name.clone().or_else(|| ctx.providers.get(&i.provider).map(|p| p.display_name.clone())).unwrap_or_else(|| i.provider.clone())) }
                                td { (ctx.providers.get(&i.provider).map(|p| p.auth_mode.as_str().to_string()).unwrap_or_default()) }
                                td { (time(i.created_at)) }
                            }
                        }
                    }
                }
            }
        },
    ))
}

#[derive(Deserialize)]
struct CatalogParams {
    q: Option<String>,
    auth_mode: Option<String>,
}

/// Providers shown at most on one catalog page.
const CATALOG_SHOWN: usize = 200;

async fn catalog(
    State(ctx): State<Context>,
    session: Session,
    Query(p): Query<CatalogParams>,
) -> WebResult<Markup> {
    let q = optional(p.q).unwrap_or_default();
    let mode = optional(p.auth_mode);
    let mut modes: Vec<String> = ctx
        .providers
        .list()
        .map(|(_, p)| p.auth_mode.as_str().to_string())
        .collect();
    modes.sort();
    modes.dedup();
    let matches: Vec<_> = ctx
        .providers
        .search(&q)
        .filter(|(_, p)| mode.as_deref().is_none_or(|m| p.auth_mode.as_str() == m))
        .take(CATALOG_SHOWN)
        .collect();
    Ok(layout::page(
        &session,
        Section::Integrations,
        "New integration",
        html! {
            p { a href="/ui/integrations" { "← Integrations" } }
            h1 { "New integration" }
            form.filters method="get" action="/ui/integrations/new" {
                label { "Provider" input type="search" name="q" value=(q) placeholder="name"; }
                label { "Auth mode"
                    select name="auth_mode" {
                        option value="" { "any" }
                        @for m in &modes { option value=(m) selected[mode.as_deref() == Some(m.as_str())] { (m) } }
                    }
                }
                button type="submit" { "Search" }
            }
            @if matches.is_empty() { p.panel.muted { "No provider matches." } }
            table.catalog {
                thead { tr { th { "Provider" } th { "Auth mode" } th { "Create" } } }
                tbody {
                    @for (name, provider) in &matches {
                        tr data-provider=(name) {
                            td { strong { (provider.display_name) } " " span.muted.mono { (name) } }
                            td { (provider.auth_mode.as_str()) }
                            td {
                                form.inline method="post" action="/ui/integrations" {
                                    (csrf_field(&session))
                                    input type="hidden" name="provider" value=(name);
                                    input type="text" name="unique_key" value=(name) aria-label="unique key" required;
                                    " "
                                    button type="submit" { "Create" }
                                }
                            }
                        }
                    }
                }
            }
        },
    ))
}

#[derive(Deserialize)]
struct CreateForm {
    provider: String,
    unique_key: String,
}

async fn create(
    State(ctx): State<Context>,
    Posted(session, form): Posted<CreateForm>,
) -> WebResult<Redirect> {
    if ctx.providers.get(&form.provider).is_none() {
        return Err(WebError::invalid(
            "provider",
            format!("`{}` is not in the provider catalog", form.provider),
        ));
    }
    let created = integrations::create(
        &ctx.db,
        &ctx.cipher,
        session.environment.id,
        NewIntegration {
            unique_key: form.unique_key.trim().to_string(),
            provider: form.provider,
            ..Default::default()
        },
    )
    .await?;
    Ok(Redirect::to(&integration_url(&created.unique_key)))
}

/// A secret as the page shows it: its last characters only.
fn masked(secret: Option<&str>) -> String {
    match secret {
        None => "not set".into(),
        Some(s) if s.chars().count() <= 8 => "••••".into(),
        Some(s) => {
            let tail: String = s
                .chars()
                .rev()
                .take(4)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            format!("••••{tail}")
        }
    }
}

#[derive(Deserialize)]
struct ShowParams {
    done: Option<String>,
}

async fn show(
    State(ctx): State<Context>,
    session: Session,
    Path(key): Path<String>,
    Query(p): Query<ShowParams>,
) -> WebResult<Markup> {
    let env = session.environment.id;
    let i = integrations::get(&ctx.db, env, &key).await?;
    let secret = i.client_secret(&ctx.cipher)?;
    let webhook_secret = i.webhook_secret(&ctx.cipher)?;
    let functions = store::list_active(&ctx.db, i.id).await?;
    let provider = ctx.providers.get(&i.provider);
    let custom = serde_json::to_string_pretty(&i.custom).unwrap_or_default();
    let url = integration_url(&i.unique_key);
    Ok(layout::page(
        &session,
        Section::Integrations,
        &i.unique_key,
        html! {
            p { a href="/ui/integrations" { "← Integrations" } }
            h1 { (i.unique_key) " " span.muted { "· " (provider.map(|p| p.display_name.as_str()).unwrap_or(&i.provider)) } }
            (layout::flash(layout::done_message(p.done.as_deref())))
            div.panel {
                dl.facts {
                    dt { "Provider" } dd.mono { (i.provider) }
                    dt { "Auth mode" } dd { (provider.map(|p| p.auth_mode.as_str()).unwrap_or("unknown")) }
                    dt { "Webhook URL" } dd.mono { (ctx.config.public_url) "/webhook/" (session.environment.uuid) "/" (i.unique_key) }
                    dt { "Connections" } dd { a href={ "/ui/connections?integration=" (layout::query_escape(&i.unique_key)) } { "list" } }
                }
            }
            h2 { "Settings" }
            form.stack.panel method="post" action=(url) {
                (csrf_field(&session))
                label { "Client id" input type="text" name="client_id" value=[i.client_id.as_deref()] autocomplete="off"; }
                label { "Client secret (" (masked(secret.as_ref().map(|s| s.expose_secret()))) "; leave empty to keep)"
                    input type="password" name="client_secret" autocomplete="new-password";
                }
                label { "Scopes (comma-separated)" input type="text" name="scopes" value=[i.scopes.as_deref()]; }
                label { "Webhook secret (" (masked(webhook_secret.as_ref().map(|s| s.expose_secret()))) "; leave empty to keep)"
                    input type="password" name="webhook_secret" autocomplete="new-password";
                }
                label { "Custom settings (JSON object)" textarea name="custom" { (custom) } }
                button type="submit" { "Save" }
            }
            h2 { "Deployed functions" }
            @if functions.is_empty() {
                p.panel.muted { "Nothing deployed. Run " code { "lasso deploy" } " or " code { "nango deploy" } "." }
            } @else {
                table.functions {
                    thead { tr { th { "Name" } th { "Type" } th { "Version" } th { "Deployed" } th { "Deployed with" } th { "Models" } } }
                    tbody {
                        @for f in &functions {
                            tr data-function=(f.name) {
                                td { (f.name) }
                                td { (f.function_type.as_str()) }
                                td { (f.config.version.as_deref().unwrap_or("—")) }
                                td { (time(f.deployed_at)) }
                                td.deployed-with { (f.deployed_with.as_str()) }
                                td {
                                    @for m in &f.config.models {
                                        details { summary { (m.name) } (layout::json_block(&serde_json::to_value(m).unwrap_or_default())) }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            h2 { "Danger zone" }
            form.panel method="post" action={ (url) "/delete" }
                data-confirm={ "Delete integration " (i.unique_key) " and all its connections?" } {
                (csrf_field(&session))
                button.danger type="submit" { "Delete integration" }
            }
        },
    ))
}

#[derive(Deserialize)]
struct UpdateForm {
    client_id: Option<String>,
    client_secret: Option<String>,
    scopes: Option<String>,
    webhook_secret: Option<String>,
    custom: Option<String>,
}

async fn update(
    State(ctx): State<Context>,
    Path(key): Path<String>,
    Posted(session, form): Posted<UpdateForm>,
) -> WebResult<Redirect> {
    let env = session.environment.id;
    let current = integrations::get(&ctx.db, env, &key).await?;
    let custom: Map<String, Value> = match optional(form.custom) {
        None => Map::new(),
        Some(text) => match serde_json::from_str(&text) {
            Ok(Value::Object(m)) => m,
            _ => return Err(WebError::invalid("custom", "must be a JSON object")),
        },
    };
    // An empty secret field keeps the stored secret (the page never shows it).
    let keep = |new: Option<String>, old: Option<secrecy::SecretString>| {
        optional(new).or_else(|| old.map(|s| s.expose_secret().to_string()))
    };
    let credentials = AppCredentials {
        client_id: optional(form.client_id),
        client_secret: keep(form.client_secret, current.client_secret(&ctx.cipher)?),
        scopes: optional(form.scopes),
        webhook_secret: keep(form.webhook_secret, current.webhook_secret(&ctx.cipher)?),
    };
    integrations::update(
        &ctx.db,
        &ctx.cipher,
        env,
        &key,
        IntegrationPatch {
            credentials: Some(credentials),
            custom: Some(custom),
            ..Default::default()
        },
    )
    .await?;
    Ok(Redirect::to(&format!(
        "{}?done=saved",
        integration_url(&key)
    )))
}

#[derive(Deserialize)]
struct Empty {}

async fn delete(
    State(ctx): State<Context>,
    Path(key): Path<String>,
    Posted(session, Empty {}): Posted<Empty>,
) -> WebResult<Redirect> {
    integrations::delete(&ctx.db, session.environment.id, &key).await?;
    Ok(Redirect::to("/ui/integrations"))
}
