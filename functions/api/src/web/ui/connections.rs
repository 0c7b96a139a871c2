//! Connections: a searchable list, import, and a connection's page with its status, its syncs
//! (trigger, pause, start, full resync, runs over time) and a records browser per model.

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::Redirect;
use axum::routing::{get, post};
use lasso_services::connections::{
    self, Connection, Credentials, EndUser, ListFilter, NewConnection,
};
use lasso_services::queue::runs::{self, Run};
use lasso_services::queue::tasks::TaskState;
use lasso_services::records::{self, ListQuery, Scope};
use lasso_services::syncs::{self, Selection, SyncMode, SyncStatus};
use lasso_services::{Context, integrations};
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::web::chart::{self, Bar};
use crate::web::form::{Posted, optional};
use crate::web::layout::{
    self, Section, badge, csrf_field, optional_time, path_escape, query_escape, time,
};
use crate::web::{Session, WebError, WebResult};

pub fn router() -> Router<Context> {
    Router::new()
        .route("/ui/connections", get(list).post(import))
        .route("/ui/connections/new", get(new_form))
        .route("/ui/connections/{integration}/{connection}", get(show))
        .route(
            "/ui/connections/{integration}/{connection}/syncs/{sync}",
            post(sync_action),
        )
        .route(
            "/ui/connections/{integration}/{connection}/records",
            get(records_page),
        )
}

const PAGE_SIZE: i64 = 50;
/// Runs shown per sync (table and chart).
const RUNS_SHOWN: i64 = 30;
const POLL_MS: u32 = 2000;

fn connection_url(integration: &str, connection: &str) -> String {
    format!(
        "/ui/connections/{}/{}",
        path_escape(integration),
        path_escape(connection)
    )
}

#[derive(Deserialize, Default)]
struct ListParams {
    q: Option<String>,
    integration: Option<String>,
    end_user: Option<String>,
    errors: Option<String>,
    page: Option<i64>,
}

async fn list(
    State(ctx): State<Context>,
    session: Session,
    Query(p): Query<ListParams>,
) -> WebResult<Markup> {
    let env = session.environment.id;
    let (q, integration, end_user) = (optional(p.q), optional(p.integration), optional(p.end_user));
    let only_errors = p.errors.as_deref() == Some("1");
    let page = p.page.unwrap_or(0).max(0);
    let found = connections::list(
        &ctx.db,
        env,
        &ListFilter {
            search: q.clone(),
            end_user_id: end_user.clone(),
            integration_ids: integration.iter().cloned().collect(),
            limit: PAGE_SIZE,
            page,
            ..Default::default()
        },
    )
    .await?;
    let all_integrations = integrations::list(&ctx.db, env).await?;
    let shown: Vec<_> = found
        .iter()
        .filter(|c| !only_errors || c.refresh_error.is_some())
        .collect();
    let base_pairs = [
        ("q", q.as_deref().unwrap_or_default()),
        ("integration", integration.as_deref().unwrap_or_default()),
        ("end_user", end_user.as_deref().unwrap_or_default()),
        ("errors", if only_errors { "1" } else { "" }),
    ];
    Ok(layout::page(
        &session,
        Section::Connections,
        "Connections",
        html! {
            div.row { h1 { "Connections" } a.button href="/ui/connections/new" { "Import a connection" } }
            form.filters method="get" action="/ui/connections" {
                label { "Search" input type="search" name="q" value=[q.as_deref()]; }
                label { "Integration"
                    select name="integration" {
                        option value="" { "any" }
                        @for i in &all_integrations {
                            option value=(i.unique_key) selected[integration.as_deref() == Some(i.unique_key.as_str())] { (i.unique_key) }
                        }
                    }
                }
                label { "End user id" input type="text" name="end_user" value=[end_user.as_deref()]; }
                label { "Only with errors" input type="checkbox" name="errors" value="1" checked[only_errors]; }
                button type="submit" { "Filter" }
            }
            @if shown.is_empty() {
                p.panel.muted { "No connections match." }
            } @else {
                table.connections {
                    thead { tr { th { "Connection" } th { "Integration" } th { "End user" } th { "Created" } th { "Errors" } } }
                    tbody {
                        @for c in &shown {
                            tr {
                                td { a href=(connection_url(&c.provider_config_key, &c.connection_id)) { (c.connection_id) } }
                                td { (c.provider_config_key) }
                                td { (end_user_text(&c.end_user)) }
                                td { (time(c.created_at)) }
                                td { @if c.refresh_error.is_some() { (badge("error")) " refresh failed" } }
                            }
                        }
                    }
                }
            }
            div.pager {
                @if page > 0 {
                    a href={ "/ui/connections" (layout::query_string(base_pairs.iter().copied().chain([("page", (page - 1).to_string().as_str())]).collect::<Vec<_>>())) } { "← Previous" }
                }
                @if found.len() as i64 == PAGE_SIZE {
                    a href={ "/ui/connections" (layout::query_string(base_pairs.iter().copied().chain([("page", (page + 1).to_string().as_str())]).collect::<Vec<_>>())) } { "Next →" }
                }
            }
        },
    ))
}

fn end_user_text(end_user: &Option<EndUser>) -> String {
    match end_user {
        None => "—".into(),
        Some(u) => match (&u.display_name, &u.email) {
            (Some(name), _) => format!("{name} ({})", u.id),
            (None, Some(email)) => format!("{email} ({})", u.id),
            (None, None) => u.id.clone(),
        },
    }
}

async fn new_form(State(ctx): State<Context>, session: Session) -> WebResult<Markup> {
    let all = integrations::list(&ctx.db, session.environment.id).await?;
    Ok(layout::page(
        &session,
        Section::Connections,
        "Import a connection",
        html! {
            h1 { "Import a connection" }
            p.muted { "Store credentials you already hold (an API key, a token) as a connection." }
            @if all.is_empty() {
                p.panel { "Create an integration first: " a href="/ui/integrations/new" { "new integration" } }
            } @else {
                form.stack.panel method="post" action="/ui/connections" {
                    (csrf_field(&session))
                    label { "Integration"
                        select name="integration" required {
                            @for i in &all { option value=(i.unique_key) { (i.unique_key) " (" (i.provider) ")" } }
                        }
                    }
                    label { "Connection id" input type="text" name="connection_id" required; }
                    label { "Credentials (JSON, as POST /connections takes them)"
                        textarea name="credentials" required placeholder=r#"{"type": "API_KEY", "apiKey": "…"}"# {}
                    }
                    label { "End user id (optional)" input type="text" name="end_user_id"; }
                    button type="submit" { "Import" }
                }
            }
        },
    ))
}

#[derive(Deserialize)]
struct ImportForm {
    integration: String,
    connection_id: String,
    credentials: String,
    end_user_id: Option<String>,
}

async fn import(
    State(ctx): State<Context>,
    Posted(session, form): Posted<ImportForm>,
) -> WebResult<Redirect> {
    let credentials: Value = serde_json::from_str(&form.credentials)
        .map_err(|e| WebError::invalid("credentials", format!("not JSON: {e}")))?;
    let credentials = Credentials::from_input(&credentials)?;
    let connection_id = form.connection_id.trim().to_string();
    connections::check_connection_id(&connection_id)?;
    let integration =
        integrations::get(&ctx.db, session.environment.id, form.integration.trim()).await?;
    let (connection, _) = connections::upsert(
        &ctx.db,
        &ctx.cipher,
        &integration,
        NewConnection {
            connection_id,
            credentials,
            connection_config: Map::new(),
            secret_config: Vec::new(),
            metadata: None,
            end_user: optional(form.end_user_id).map(|id| EndUser {
                id,
                email: None,
                display_name: None,
                tags: None,
                organization: None,
            }),
            tags: Map::new(),
            webhook_url_override: None,
        },
    )
    .await?;
    syncs::connection_stored(&ctx, connection.id).await;
    Ok(Redirect::to(&connection_url(
        &integration.unique_key,
        &connection.connection_id,
    )))
}

#[derive(Deserialize)]
struct ShowParams {
    done: Option<String>,
}

/// Bars of a sync's runs, oldest first: duration coloured by outcome, and records changed.
fn run_charts(runs: &[Run]) -> Markup {
    let ordered: Vec<&Run> = runs.iter().rev().collect();
    let class = |r: &Run| match r.state {
        TaskState::Succeeded => "ok",
        TaskState::Failed | TaskState::Expired | TaskState::Cancelled => "bad",
        _ => "run",
    };
    let durations: Vec<Bar> = ordered
        .iter()
        .map(|r| {
            let secs = match (r.started_at, r.completed_at) {
                (Some(s), Some(e)) => (e - s).num_milliseconds() as f64 / 1000.0,
                _ => 0.0,
            };
            Bar {
                value: secs,
                class: class(r),
                label: format!(
                    "{} {} · {:.1} s",
                    r.created_at.format("%Y-%m-%d %H:%M:%S"),
                    r.state.as_str(),
                    secs
                ),
            }
        })
        .collect();
    let changed: Vec<Bar> = ordered
        .iter()
        .map(|r| {
            let (a, u, d) = r.changed();
            Bar {
                value: (a + u + d) as f64,
                class: class(r),
                label: format!("{a} added, {u} updated, {d} deleted"),
            }
        })
        .collect();
    html! {
        div.charts {
            (chart::bars("Runs over time: duration, coloured by outcome", &durations, " s"))
            (chart::bars("Records changed per run", &changed, ""))
        }
    }
}

fn sync_section(
    session: &Session,
    connection: &Connection,
    status: &SyncStatus,
    runs: &[Run],
) -> Markup {
    let action_url = format!(
        "{}/syncs/{}",
        connection_url(&connection.provider_config_key, &connection.connection_id),
        path_escape(&status.name)
    );
    let button = |action: &str, label: &str, class: &str| {
        html! {
            form.inline method="post" action=(action_url) {
                (csrf_field(session))
                input type="hidden" name="action" value=(action);
                button type="submit" class=(class) data-action=(action) { (label) }
            }
        }
    };
    let latest: String = status
        .latest_result
        .as_ref()
        .map(|r| {
            r.iter()
                .map(|(model, c)| format!("{model}: +{} ~{} −{}", c.added, c.updated, c.deleted))
                .collect::<Vec<_>>()
                .join("; ")
        })
        .unwrap_or_else(|| "—".into());
    html! {
        section.panel.sync data-sync=(status.name) {
            div.row {
                h2 { (status.name) }
                (badge(status.status))
                div.actions {
                    (button("trigger", "Trigger", ""))
                    @if status.status == "PAUSED" {
                        (button("start", "Start", "secondary"))
                    } @else {
                        (button("pause", "Pause", "secondary"))
                    }
                    (button("full_resync", "Full resync", "secondary"))
                }
            }
            dl.facts {
                dt { "Frequency" } dd { (status.frequency) }
                dt { "Last run finished" } dd { (optional_time(status.finished_at)) }
                dt { "Last result" } dd { (latest) }
                dt { "Next run" } dd { (optional_time(status.next_scheduled_sync_at)) }
                dt { "Records" } dd {
                    @for (model, n) in &status.record_count {
                        a href={ (connection_url(&connection.provider_config_key, &connection.connection_id)) "/records?model=" (query_escape(model)) } { (model) } ": " (n) " "
                    }
                }
            }
            (run_charts(runs))
            table.runs {
                thead { tr { th { "Run" } th { "State" } th { "Attempt" } th { "Started" } th { "Finished" } th { "Changed" } th { "Error" } } }
                tbody {
                    @for r in runs {
                        @let (a, u, d) = r.changed();
                        tr data-run=(r.id) {
                            td.mono title=(r.id) { "…" (r.id.simple().to_string()[24..]) }
                            td { (badge(r.state.as_str())) }
                            td.num { (r.attempt) }
                            td { (optional_time(r.started_at)) }
                            td { (optional_time(r.completed_at)) }
                            td { "+" (a) " ~" (u) " −" (d) }
                            td.error { (r.error_message().unwrap_or_default()) }
                        }
                    }
                }
            }
            p { a href={ "/ui/logs" (layout::query_string([("kind", "sync"), ("integration", connection.provider_config_key.as_str()), ("connection", connection.connection_id.as_str()), ("script", status.name.as_str())])) } { "Logs of this sync →" } }
        }
    }
}

async fn show(
    State(ctx): State<Context>,
    session: Session,
    Path((integration, connection_id)): Path<(String, String)>,
    Query(params): Query<ShowParams>,
) -> WebResult<Markup> {
    let env = session.environment.id;
    let connection =
        connections::get(&ctx.db, &ctx.cipher, env, &integration, &connection_id).await?;
    let statuses = syncs::status(
        &ctx,
        env,
        &Selection {
            provider_config_key: integration.clone(),
            connection_id: Some(connection_id.clone()),
            syncs: Vec::new(),
        },
    )
    .await?;
    let mut sections = Vec::new();
    for status in &statuses {
        let runs = runs::list(&ctx.db, env, status.id, RUNS_SHOWN).await?;
        sections.push(sync_section(&session, &connection, status, &runs));
    }
    let live = statuses.iter().any(|s| s.status == "RUNNING");
    let credentials = &connection.credentials;
    Ok(layout::page(
        &session,
        Section::Connections,
        &connection.connection_id,
        html! {
            p { a href="/ui/connections" { "← Connections" } }
            h1 { (connection.connection_id) " " span.muted { "· " (connection.provider_config_key) } }
            (layout::flash(layout::done_message(params.done.as_deref())))
            div.panel {
                dl.facts {
                    dt { "Integration" } dd { a href={ "/ui/integrations/" (path_escape(&connection.provider_config_key)) } { (connection.provider_config_key) } " (" (connection.provider) ")" }
                    dt { "Credentials" } dd { (credentials.type_name()) }
                    dt { "Token expires" } dd { (optional_time(credentials.expires_at())) }
                    dt { "Refresh" } dd {
                        @if let Some(e) = &connection.refresh_error {
                            span.error { (e) } " (" (connection.refresh_failures) " failure(s), last " (optional_time(connection.last_refresh_failure_at)) ")"
                        } @else {
                            "ok; last refreshed " (optional_time(connection.last_refresh_at))
                        }
                    }
                    dt { "End user" } dd { (end_user_text(&connection.end_user)) }
                    dt { "Tags" } dd {
                        @if connection.tags.is_empty() { span.muted { "none" } }
                        @for (k, v) in &connection.tags { span.badge { (k) "=" (v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string())) } " " }
                    }
                    dt { "Created" } dd { (time(connection.created_at)) }
                }
                h2 { "Metadata" }
                @match &connection.metadata {
                    Some(m) => (layout::json_block(m)),
                    None => p.muted { "none" },
                }
            }
            h2 { "Syncs" }
            div #syncs data-poll=[live.then_some(POLL_MS)] {
                @if sections.is_empty() { p.panel.muted { "No syncs are deployed for this integration." } }
                @for s in &sections { (s) }
            }
        },
    ))
}

#[derive(Deserialize)]
struct SyncActionForm {
    action: String,
}

async fn sync_action(
    State(ctx): State<Context>,
    Path((integration, connection_id, sync)): Path<(String, String, String)>,
    Posted(session, form): Posted<SyncActionForm>,
) -> WebResult<Redirect> {
    let env = session.environment.id;
    let selection = Selection {
        provider_config_key: integration.clone(),
        connection_id: Some(connection_id.clone()),
        syncs: vec![sync],
    };
    let done = match form.action.as_str() {
        "trigger" => {
            syncs::trigger(&ctx, env, &selection, SyncMode::Incremental).await?;
            "triggered"
        }
        "full_resync" => {
            syncs::trigger(&ctx, env, &selection, SyncMode::FullRefresh).await?;
            "full_resync"
        }
        "pause" => {
            syncs::pause(&ctx, env, &selection).await?;
            "paused"
        }
        "start" => {
            syncs::start(&ctx, env, &selection).await?;
            "started"
        }
        other => {
            return Err(WebError::invalid(
                "action",
                format!("`{other}` is not trigger, full_resync, pause or start"),
            ));
        }
    };
    Ok(Redirect::to(&format!(
        "{}?done={done}",
        connection_url(&integration, &connection_id)
    )))
}

#[derive(Deserialize)]
struct RecordsParams {
    model: String,
    cursor: Option<String>,
}

const RECORDS_PAGE: i64 = 25;

async fn records_page(
    State(ctx): State<Context>,
    session: Session,
    Path((integration, connection_id)): Path<(String, String)>,
    Query(p): Query<RecordsParams>,
) -> WebResult<Markup> {
    let env = session.environment.id;
    let connection =
        connections::get(&ctx.db, &ctx.cipher, env, &integration, &connection_id).await?;
    let cursor = optional(p.cursor.clone())
        .as_deref()
        .map(records::Cursor::decode)
        .transpose()?;
    let page = records::list(
        &ctx.db,
        &Scope::new(connection.id, &p.model, None),
        &ListQuery {
            cursor,
            limit: RECORDS_PAGE,
            ..Default::default()
        },
    )
    .await?;
    let back = connection_url(&integration, &connection_id);
    Ok(layout::page(
        &session,
        Section::Connections,
        &format!("{} records", p.model),
        html! {
            p { a href=(back) { "← " (connection_id) } }
            h1 { (p.model) " records " span.muted { "· " (connection_id) } }
            @if page.records.is_empty() { p.panel.muted { "No records on this page." } }
            @for record in &page.records {
                details.panel.record {
                    summary.mono { (record.get("id").map(|v| v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string())).unwrap_or_default()) }
                    (layout::json_block(record))
                }
            }
            div.pager {
                @if p.cursor.is_some() { a href={ (back) "/records?model=" (query_escape(&p.model)) } { "← First page" } }
                @if let Some(next) = &page.next_cursor {
                    a rel="next" href={ (back) "/records?model=" (query_escape(&p.model)) "&cursor=" (query_escape(next)) } { "Next page →" }
                }
            }
        },
    ))
}
