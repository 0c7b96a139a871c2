//! The environment at a glance: tasks per minute over the last hour and the queue's depth.

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use lasso_services::Context;
use lasso_services::queue::runs;
use maud::{Markup, html};

use crate::web::chart::{self, Bar};
use crate::web::layout::{self, Section};
use crate::web::{Session, WebResult};

pub fn router() -> Router<Context> {
    Router::new().route("/ui/", get(show))
}

const MINUTES: i32 = 60;

async fn show(State(ctx): State<Context>, session: Session) -> WebResult<Markup> {
    let env = session.environment.id;
    let minutes = runs::per_minute(&ctx.db, env, MINUTES).await?;
    let depth = runs::depth(&ctx.db, env).await?;
    let bars: Vec<Bar> = minutes
        .iter()
        .map(|m| Bar {
            value: (m.succeeded + m.failed) as f64,
            class: if m.failed > 0 { "bad" } else { "ok" },
            label: format!(
                "{}: {} succeeded, {} failed or expired",
                m.minute.format("%H:%M"),
                m.succeeded,
                m.failed
            ),
        })
        .collect();
    let depth_bars: Vec<Bar> = depth
        .iter()
        .map(|(state, n)| Bar {
            value: *n as f64,
            class: "run",
            label: format!("{state}: {n}"),
        })
        .collect();
    Ok(layout::page(
        &session,
        Section::Overview,
        "Overview",
        html! {
            h1 { "Overview of " (session.environment.name) }
            div.panel #tasks-per-minute {
                (chart::bars(&format!("Tasks ended per minute, last {MINUTES} minutes"), &bars, ""))
            }
            div.panel #queue-depth {
                (chart::bars("Queue depth now: waiting (CREATED), handed to a runner (DISPATCHED), running (STARTED)", &depth_bars, ""))
                p.muted {
                    @for (state, n) in &depth { (state) ": " strong { (n) } "  " }
                }
            }
            p { a href="/ui/logs" { "Logs →" } " " a href="/ui/connections" { "Connections →" } }
        },
    ))
}
