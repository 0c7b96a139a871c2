//! The Connect UI's views: HTML fragments its script puts into the page's `#connect` element.
//! Attributes tell the script what to do: `data-view` buttons load another view, a
//! `data-connect` form is submitted to its `action`, `data-oauth-url` sends the popup to the
//! provider, `data-connected` and `data-error-code` are reported to the app (the SDK's
//! `connect` and `error` events).

use std::collections::BTreeMap;

use maud::{Markup, html};

use super::fields::{Field, Input};
use super::words::Failure;
use crate::web::layout::path_escape;

/// An integration the session may connect.
pub struct Item {
    pub key: String,
    pub name: String,
    pub mode: String,
}

/// How an auth mode is described to a person.
pub fn mode_label(mode: &str) -> &'static str {
    match mode {
        "OAUTH2" => "Sign in with your account",
        "API_KEY" => "API key",
        "BASIC" => "Username and password",
        "OAUTH2_CC" => "Client ID and secret",
        _ => "Not supported here yet",
    }
}

fn avatar(name: &str) -> Markup {
    let initial: String = name
        .chars()
        .next()
        .map(|c| c.to_uppercase().collect())
        .unwrap_or_default();
    html! { span.avatar aria-hidden="true" { (initial) } }
}

fn view_url(key: &str) -> String {
    format!("integrations/{}", path_escape(key))
}

/// The integrations to pick from.
pub fn list(items: &[Item]) -> Markup {
    html! {
        section.view {
            h2 tabindex="-1" { "Choose an integration" }
            @if items.is_empty() {
                p.muted { "No integrations are available to connect. Ask the app's team to set one up." }
            } @else {
                ul.picker {
                    @for item in items {
                        li {
                            button.pick type="button" data-view=(view_url(&item.key)) {
                                (avatar(&item.name))
                                span.pick-text {
                                    span.pick-name { (item.name) }
                                    span.pick-mode { (mode_label(&item.mode)) }
                                }
                                span.chevron aria-hidden="true" { "›" }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Everything a connect form shows.
pub struct Form<'a> {
    pub key: &'a str,
    pub name: &'a str,
    pub mode: &'a str,
    pub fields: &'a [Field],
    /// Values to show again (never secrets).
    pub values: &'a BTreeMap<String, String>,
    pub problems: &'a BTreeMap<String, String>,
    pub failure: Option<&'a Failure>,
    pub reconnect: bool,
    /// Whether there is a list to go back to.
    pub back: bool,
}

fn heading(name: &str, reconnect: bool) -> Markup {
    html! {
        div.integration-head {
            (avatar(name))
            h2 tabindex="-1" {
                @if reconnect { "Reconnect " (name) } @else { "Connect " (name) }
            }
        }
    }
}

fn back_button(back: bool) -> Markup {
    html! {
        @if back {
            button.secondary type="button" data-view="start" { "Back" }
        }
    }
}

fn alert(failure: &Failure) -> Markup {
    html! {
        div.alert role="alert" data-error-code=(failure.code) data-error-message=(failure.text) {
            p { (failure.text) }
            @if let Some(detail) = &failure.detail {
                details { summary { "Details" } p.mono { (detail) } }
            }
        }
    }
}

fn field_markup(field: &Field, value: &str, problem: Option<&str>, first_problem: bool) -> Markup {
    let id = field.id();
    let hint = field.description.as_ref().map(|_| format!("{id}-hint"));
    let error = problem.map(|_| format!("{id}-error"));
    let described: Vec<&str> = [hint.as_deref(), error.as_deref()]
        .into_iter()
        .flatten()
        .collect();
    let described = (!described.is_empty()).then(|| described.join(" "));
    let invalid = problem.map(|_| "true");
    html! {
        div.field {
            label for=(id) {
                (field.label)
                @if field.required { span.required aria-hidden="true" { " *" } }
            }
            @if let (Some(text), Some(hint)) = (&field.description, &hint) {
                p.hint id=(hint) { (text) }
            }
            div.affixed {
                @if let Some(prefix) = &field.prefix { span.affix aria-hidden="true" { (prefix) } }
                @match &field.input {
                    Input::Select(options) => {
                        select id=(id) name=(field.name) required[field.required]
                            aria-describedby=[described.as_deref()] aria-invalid=[invalid]
                            autofocus[first_problem] {
                            @if !field.required { option value="" { "—" } }
                            @for option in options {
                                option value=(option) selected[option == value] { (option) }
                            }
                        }
                    }
                    Input::Secret => {
                        input id=(id) name=(field.name) type="password" autocomplete="off"
                            spellcheck="false" required[field.required]
                            placeholder=[field.example.as_deref()]
                            aria-describedby=[described.as_deref()] aria-invalid=[invalid]
                            autofocus[first_problem];
                    }
                    Input::Text => {
                        input id=(id) name=(field.name) type="text" value=(value)
                            autocomplete="off" spellcheck="false" required[field.required]
                            placeholder=[field.example.as_deref()]
                            aria-describedby=[described.as_deref()] aria-invalid=[invalid]
                            autofocus[first_problem];
                    }
                }
                @if let Some(suffix) = &field.suffix { span.affix aria-hidden="true" { (suffix) } }
            }
            @if let (Some(text), Some(error)) = (problem, &error) {
                p.field-error id=(error) { (text) }
            }
        }
    }
}

/// The form that connects one integration.
pub fn form(f: &Form<'_>) -> Markup {
    let action = format!("/connect-ui/views/{}", view_url(f.key));
    let first_problem = f
        .fields
        .iter()
        .find(|field| f.problems.contains_key(&field.name))
        .map(|field| field.name.as_str());
    let oauth = f.mode == "OAUTH2";
    html! {
        section.view {
            (heading(f.name, f.reconnect))
            @if let Some(failure) = f.failure { (alert(failure)) }
            @if !f.problems.is_empty() {
                div.alert role="alert" {
                    p { "Some fields need attention:" }
                    ul {
                        @for field in f.fields {
                            @if let Some(problem) = f.problems.get(&field.name) {
                                li { a href={ "#" (field.id()) } { (problem) } }
                            }
                        }
                    }
                }
            }
            form.stack method="post" action=(action) data-connect data-mode=(f.mode) novalidate {
                @if oauth {
                    p.muted {
                        "You will sign in to " (f.name) " in a new window, then come back here."
                    }
                }
                @for field in f.fields {
                    (field_markup(
                        field,
                        f.values.get(&field.name).map_or("", String::as_str),
                        f.problems.get(&field.name).map(String::as_str),
                        first_problem == Some(field.name.as_str()),
                    ))
                }
                div.actions {
                    (back_button(f.back))
                    button type="submit" {
                        @if oauth { "Continue to " (f.name) }
                        @else if f.reconnect { "Reconnect" }
                        @else { "Connect" }
                    }
                }
            }
        }
    }
}

/// An integration whose auth mode the Connect UI has no form for.
pub fn unsupported(name: &str, mode: &str, back: bool) -> Markup {
    html! {
        section.view {
            (heading(name, false))
            div.alert role="alert" data-error-code="unsupported_auth_mode"
                data-error-message="This sign-in method is not supported here yet." {
                p {
                    (name) " signs in with " code { (mode) } ", which Lasso's Connect UI does not support yet. "
                    "Ask the app's team for another way to connect it."
                }
            }
            div.actions { (back_button(back)) }
        }
    }
}

/// Waiting for the provider's sign-in in the popup, which the script sends to `url`.
pub fn popup(key: &str, name: &str, url: &str, reconnect: bool) -> Markup {
    html! {
        section.view data-oauth-url=(url) {
            (heading(name, reconnect))
            p role="status" {
                "Finish signing in to " (name) " in the window that opened. This page updates when you are done."
            }
            div.actions {
                button.secondary type="button" data-view=(view_url(key)) { "Start again" }
                button type="button" data-focus-popup { "Show the sign-in window" }
            }
        }
    }
}

/// The connection was made.
pub fn connected(key: &str, name: &str, connection_id: &str, reconnect: bool) -> Markup {
    html! {
        section.view data-connected data-integration=(key) data-connection-id=(connection_id) {
            div.done aria-hidden="true" { "✓" }
            h2 tabindex="-1" {
                @if reconnect { (name) " is reconnected" } @else { (name) " is connected" }
            }
            p role="status" { "You can go back to the app now." }
            div.actions { button type="button" data-close autofocus { "Done" } }
        }
    }
}

/// A view that only says something (an expired session, an unknown integration).
pub fn message(title: &str, failure: &Failure) -> Markup {
    html! {
        section.view {
            h2 tabindex="-1" { (title) }
            (alert(failure))
            div.actions { button.secondary type="button" data-close { "Close" } }
        }
    }
}
