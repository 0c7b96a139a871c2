//! The page shell every web page shares, and small rendering helpers.

use chrono::{DateTime, Utc};
use maud::{DOCTYPE, Markup, html};

use super::Session;

/// Where the dashboard's styles and script are served (see [`super::assets::router`]).
const ASSETS: &str = "/ui/assets";

/// The `<head>` every page shares: the embedded stylesheet and script under `assets` (the
/// asset path of the UI the page belongs to), then the page's own `scripts`.
fn head(title: &str, assets: &str, scripts: &[&str]) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            meta name="referrer" content="same-origin";
            title { (title) " · Lasso" }
            link rel="stylesheet" href={ (assets) "/app.css" };
            script src={ (assets) "/app.js" } defer {}
            @for src in scripts { script src=(src) defer {} }
        }
    }
}

/// A page without navigation (sign-in, errors).
pub fn bare(title: &str, body: Markup) -> Markup {
    standalone(title, ASSETS, &[], body)
}

/// A page with the shared look but no dashboard navigation, its stylesheet and script served
/// under `assets`, plus `scripts` of its own (the hosted Connect UI).
pub fn standalone(title: &str, assets: &str, scripts: &[&str], body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title, assets, scripts))
            body { (body) }
        }
    }
}

/// The sections of the dashboard, for the navigation bar.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Overview,
    Logs,
    Connections,
    Integrations,
    Settings,
}

/// A dashboard page: navigation, the environment, sign-out.
pub fn page(session: &Session, section: Section, title: &str, body: Markup) -> Markup {
    let link = |s: Section, href: &str, label: &str| {
        html! { a href=(href) class=[(s == section).then_some("active")] { (label) } }
    };
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title, ASSETS, &[]))
            body {
                header.top {
                    a.brand href="/ui/" { "Lasso" }
                    nav {
                        (link(Section::Overview, "/ui/", "Overview"))
                        (link(Section::Logs, "/ui/logs", "Logs"))
                        (link(Section::Connections, "/ui/connections", "Connections"))
                        (link(Section::Integrations, "/ui/integrations", "Integrations"))
                        (link(Section::Settings, "/ui/settings", "Settings"))
                    }
                    span.env title="environment" { "env: " strong { (session.environment.name) } }
                    form method="post" action="/ui/signout" {
                        (csrf_field(session))
                        button type="submit" { "Sign out" }
                    }
                }
                main { (body) }
            }
        }
    }
}

/// What a `done` code in a URL says after a form post. Only these fixed texts are shown, so a
/// crafted link cannot put words of its own on the page.
pub fn done_message(code: Option<&str>) -> Option<&'static str> {
    Some(match code? {
        "triggered" => "Run triggered.",
        "full_resync" => "Full resync started.",
        "paused" => "Sync paused; its running run, if any, is cancelled.",
        "started" => "Sync started.",
        "saved" => "Saved.",
        "webhook_saved" => "Webhook URL saved.",
        _ => return None,
    })
}

/// The confirmation of a form post, if any.
pub fn flash(message: Option<&str>) -> Markup {
    html! {
        @if let Some(m) = message { p.flash role="status" { (m) } }
    }
}

/// The hidden field every state-changing form carries.
pub fn csrf_field(session: &Session) -> Markup {
    html! { input type="hidden" name="_csrf" value=(session.csrf); }
}

/// A timestamp as people read it, with the exact value on hover.
pub fn time(at: DateTime<Utc>) -> Markup {
    html! {
        time datetime=(at.to_rfc3339()) title=(at.to_rfc3339()) {
            (at.format("%Y-%m-%d %H:%M:%S"))
        }
    }
}

pub fn optional_time(at: Option<DateTime<Utc>>) -> Markup {
    match at {
        Some(at) => time(at),
        None => html! { span.muted { "—" } },
    }
}

/// A duration between two instants, short.
pub fn duration(from: DateTime<Utc>, to: Option<DateTime<Utc>>) -> String {
    match to {
        None => "…".into(),
        Some(to) => {
            let ms = (to - from).num_milliseconds().max(0);
            if ms < 1000 {
                format!("{ms} ms")
            } else {
                format!("{:.1} s", ms as f64 / 1000.0)
            }
        }
    }
}

pub fn badge(text: &str) -> Markup {
    html! { span class={ "badge " (text) } { (text) } }
}

/// JSON, pretty-printed in a block.
pub fn json_block(value: &serde_json::Value) -> Markup {
    let text = serde_json::to_string_pretty(value).unwrap_or_default();
    html! { pre.json { (text) } }
}

/// `value` escaped for a URL's query string.
pub fn query_escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// `value` escaped for one path segment.
pub fn path_escape(value: &str) -> String {
    query_escape(value).replace('/', "%2F")
}

/// A query string from pairs, skipping empty values.
pub fn query_string<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let parts: Vec<String> = pairs
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}={}", query_escape(v)))
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_escaped() {
        assert_eq!(query_escape("a b&c=d/é"), "a%20b%26c%3Dd/%C3%A9");
        assert_eq!(path_escape("a/b"), "a%2Fb");
        assert_eq!(
            query_string([("q", "x y"), ("kind", ""), ("state", "failed")]),
            "?q=x%20y&state=failed"
        );
    }
}
