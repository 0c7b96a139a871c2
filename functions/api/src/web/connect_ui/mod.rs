//! The hosted Connect UI under `/connect-ui/`: the page `openConnectUI()` of Nango's frontend
//! SDK loads in an iframe (and `connect_link` opens in a tab), served by the api itself.
//!
//! The page is a shell; its script (`assets/connect.js`) speaks the SDK's postMessage protocol
//! — `ready` to the parent, the `session_token` back, then `connect`, `error` and `close` — and
//! loads views, HTML fragments rendered here, with the session token as `Authorization: Bearer`.
//! The token is the only credential: no cookie is set or read, so any site may frame the page
//! (it can do nothing until its parent hands it a token) and every call goes to this origin,
//! whatever `apiURL` the SDK was given. OAuth runs in a popup opened from the page, whose
//! callback page posts the outcome back to it (the callback posts only to the origin that opened
//! the flow: this one).

mod fields;
mod views;
mod words;

use std::collections::BTreeMap;

use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::header::{
    AUTHORIZATION, CACHE_CONTROL, CONTENT_SECURITY_POLICY, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS,
};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Form, Router};
use lasso_services::auth_flows::{Caller, Outcome, Request, direct, oauth2};
use lasso_services::connect_sessions::{self, ConnectSession};
use lasso_services::integrations::{self, Integration};
use lasso_services::providers::{AuthMode, Provider};
use lasso_services::{Context, Error};
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::{Map, Value};

use self::fields::Field;
use self::words::Failure;
use super::assets;
use super::layout::{self, query_escape};

const ASSETS: &str = "/connect-ui/assets";

/// Framing is allowed from any site: the page holds no credential of its own (no cookie, no
/// key), so a framing site can make it do nothing it could not do with the token it hands it.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors *";

pub fn router() -> Router<Context> {
    Router::new()
        .route(
            "/connect-ui",
            get(|| async { Redirect::to("/connect-ui/") }),
        )
        .route("/connect-ui/", get(shell))
        .route("/connect-ui/views/start", get(start))
        .route(
            "/connect-ui/views/integrations/{key}",
            get(form_view).post(submit),
        )
        .route(
            "/connect-ui/views/integrations/{key}/connected",
            get(connected_view),
        )
        .layer(axum::middleware::map_response(page_headers))
        .merge(assets::router("/connect-ui"))
        .route(
            "/connect-ui/assets/connect.js",
            get(|| async { assets::script(assets::CONNECT_JS) }),
        )
}

async fn page_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    for (name, value) in [
        (CACHE_CONTROL, "no-store"),
        (CONTENT_SECURITY_POLICY, CSP),
        // The popup's `/oauth/connect` learns its opener's origin from the Referer.
        (REFERRER_POLICY, "same-origin"),
        (X_CONTENT_TYPE_OPTIONS, "nosniff"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

/// `GET /connect-ui/`: the page. Its views arrive once the token does.
async fn shell() -> Markup {
    layout::standalone(
        "Connect",
        ASSETS,
        &["/connect-ui/assets/connect.js"],
        html! {
            div.connect-backdrop data-backdrop {
                div.connect-panel role="dialog" aria-modal="true" aria-labelledby="connect-title" {
                    header.connect-head {
                        h1 id="connect-title" { "Connect an account" }
                        button.close type="button" data-close aria-label="Close" { "×" }
                    }
                    div id="connect" aria-live="polite" {
                        p.muted role="status" data-waiting { "Loading…" }
                        noscript { p.error { "This page needs JavaScript." } }
                    }
                    footer.connect-foot { "Secured by Lasso" }
                }
            }
        },
    )
}

/// A view, or a view saying what went wrong.
struct View {
    status: StatusCode,
    markup: Markup,
}

impl View {
    fn ok(markup: Markup) -> Self {
        View {
            status: StatusCode::OK,
            markup,
        }
    }

    /// A failure that leaves no form to correct (expired session, unknown integration, ...).
    fn failed(error: &Error) -> Self {
        let failure = words::failure(error, "this integration", &[]);
        let status = match error {
            Error::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Error::NotFound { .. } => StatusCode::NOT_FOUND,
            Error::BadRequest { .. } | Error::Invalid { .. } => StatusCode::BAD_REQUEST,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        View {
            status,
            markup: views::message("Cannot connect", &failure),
        }
    }
}

impl From<Error> for View {
    fn from(e: Error) -> Self {
        View::failed(&e)
    }
}

impl IntoResponse for View {
    fn into_response(self) -> Response {
        (self.status, self.markup).into_response()
    }
}

type ViewResult = Result<View, View>;

/// The connect session of `Authorization: Bearer <connect session token>`, the one credential
/// of the Connect UI's views. Cookies are never read.
struct ViewSession(ConnectSession);

impl FromRequestParts<Context> for ViewSession {
    type Rejection = View;

    async fn from_request_parts(parts: &mut Parts, ctx: &Context) -> Result<Self, Self::Rejection> {
        let token = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim)
            .unwrap_or_default();
        connect_sessions::authenticate(&ctx.db, token)
            .await
            .map(ViewSession)
            .map_err(|e| View::failed(&e))
    }
}

/// An integration the session may connect, with its provider.
struct Target<'c> {
    integration: Integration,
    provider: &'c Provider,
}

impl Target<'_> {
    fn name(&self) -> &str {
        self.integration
            .display_name
            .as_deref()
            .filter(|n| !n.trim().is_empty())
            .unwrap_or(self.provider.display_name.as_str())
    }

    fn fields(&self, session: &ConnectSession) -> Vec<Field> {
        let preset = session
            .defaults_for(&self.integration.unique_key)
            .connection_config
            .unwrap_or_default();
        fields::for_provider(self.provider, &preset)
    }
}

async fn target<'c>(
    ctx: &'c Context,
    session: &ConnectSession,
    key: &str,
) -> Result<Target<'c>, Error> {
    session.check_allowed(key)?;
    let integration = integrations::get(&ctx.db, session.environment.id, key).await?;
    let provider = ctx
        .providers
        .get(&integration.provider)
        .ok_or_else(|| Error::unknown_provider(&integration.provider))?;
    Ok(Target {
        integration,
        provider,
    })
}

/// The integrations the session may connect: the allowed ones that exist, by name.
async fn available<'c>(
    ctx: &'c Context,
    session: &ConnectSession,
) -> Result<Vec<Target<'c>>, Error> {
    let mut out: Vec<Target<'c>> = integrations::list(&ctx.db, session.environment.id)
        .await?
        .into_iter()
        .filter(|i| session.check_allowed(&i.unique_key).is_ok())
        .filter_map(|integration| {
            let provider = ctx.providers.get(&integration.provider)?;
            Some(Target {
                integration,
                provider,
            })
        })
        .collect();
    out.sort_by_key(|t| t.name().to_lowercase());
    Ok(out)
}

/// Whether the session offers a list to go back to.
async fn has_list(ctx: &Context, session: &ConnectSession) -> Result<bool, Error> {
    Ok(session.reconnect.is_none() && available(ctx, session).await?.len() > 1)
}

/// `GET /connect-ui/views/start`: the list, or straight the form when there is one integration
/// to connect (or one connection to reconnect).
async fn start(State(ctx): State<Context>, ViewSession(session): ViewSession) -> ViewResult {
    let only = match &session.reconnect {
        Some(target) => Some(target.provider_config_key.clone()),
        None => {
            let all = available(&ctx, &session).await?;
            if all.len() != 1 {
                let items: Vec<views::Item> = all
                    .iter()
                    .map(|t| views::Item {
                        key: t.integration.unique_key.clone(),
                        name: t.name().to_string(),
                        mode: t.provider.auth_mode.to_string(),
                    })
                    .collect();
                return Ok(View::ok(views::list(&items)));
            }
            all.first().map(|t| t.integration.unique_key.clone())
        }
    };
    let key = only.unwrap_or_default();
    let target = target(&ctx, &session, &key).await?;
    Ok(View::ok(render_form(
        &session,
        &target,
        Shown::default(),
        false,
    )))
}

/// What a form shows besides its fields.
#[derive(Default)]
struct Shown {
    values: BTreeMap<String, String>,
    problems: BTreeMap<String, String>,
    failure: Option<Failure>,
}

fn render_form(session: &ConnectSession, target: &Target<'_>, shown: Shown, back: bool) -> Markup {
    let mode = target.provider.auth_mode.to_string();
    if !fields::supported(&target.provider.auth_mode) {
        return views::unsupported(target.name(), &mode, back);
    }
    let fields = target.fields(session);
    // Secrets are never sent back to the browser.
    let values: BTreeMap<String, String> = shown
        .values
        .into_iter()
        .filter(|(name, _)| {
            fields
                .iter()
                .any(|f| &f.name == name && f.input != fields::Input::Secret)
        })
        .collect();
    let defaults: BTreeMap<String, String> = fields
        .iter()
        .filter_map(|f| Some((f.name.clone(), f.default.clone()?)))
        .collect();
    let values = if values.is_empty() { defaults } else { values };
    views::form(&views::Form {
        key: &target.integration.unique_key,
        name: target.name(),
        mode: &mode,
        fields: &fields,
        values: &values,
        problems: &shown.problems,
        failure: shown.failure.as_ref(),
        reconnect: session.reconnect.is_some(),
        back,
    })
}

#[derive(Deserialize)]
struct FormQuery {
    /// How the OAuth popup ended, as the callback page reported it (an API error code, or the
    /// script's `window_closed` / `blocked_by_browser`): shown as a fixed sentence.
    error: Option<String>,
}

/// `GET /connect-ui/views/integrations/:key`: the integration's form.
async fn form_view(
    State(ctx): State<Context>,
    ViewSession(session): ViewSession,
    Path(key): Path<String>,
    Query(query): Query<FormQuery>,
) -> ViewResult {
    let target = target(&ctx, &session, &key).await?;
    let failure = query.error.map(|code| Failure {
        text: words::for_code(&code, target.name()),
        code,
        field: None,
        detail: None,
    });
    let back = has_list(&ctx, &session).await?;
    let shown = Shown {
        failure,
        ..Shown::default()
    };
    Ok(View::ok(render_form(&session, &target, shown, back)))
}

/// `POST /connect-ui/views/integrations/:key`: checks the form, then connects (API key, basic,
/// client credentials) or answers where the OAuth popup goes.
async fn submit(
    State(ctx): State<Context>,
    ViewSession(session): ViewSession,
    Path(key): Path<String>,
    Form(form): Form<Vec<(String, String)>>,
) -> ViewResult {
    let target = target(&ctx, &session, &key).await?;
    let back = has_list(&ctx, &session).await?;
    let fields = target.fields(&session);
    let values = fields::values(&fields, form);
    let problems = fields::problems(&fields, &values);
    let reconnect = session.reconnect.is_some();
    let refuse = |session: &ConnectSession, shown: Shown| View {
        status: StatusCode::BAD_REQUEST,
        markup: render_form(session, &target, shown, back),
    };
    if !problems.is_empty() {
        return Err(refuse(
            &session,
            Shown {
                values,
                problems,
                failure: None,
            },
        ));
    }
    let params: Map<String, Value> = fields
        .iter()
        .filter_map(|f| {
            let value = values.get(&f.name).filter(|v| !v.is_empty())?;
            Some((f.config_name()?.to_string(), Value::String(value.clone())))
        })
        .collect();
    let request = Request {
        provider_config_key: key.clone(),
        connection_id: None,
        params,
    };
    let credential = |name: &str| values.get(name).cloned().unwrap_or_default();
    let caller = Caller::ConnectSession(Box::new(session.clone()));
    let outcome: Result<Option<Outcome>, Error> = match target.provider.auth_mode {
        AuthMode::OAuth2 => oauth2::check(&ctx, &caller, &request).await.map(|()| None),
        AuthMode::ApiKey => direct::api_key(&ctx, &caller, &request, &credential("apiKey"))
            .await
            .map(Some),
        AuthMode::Basic => direct::basic(
            &ctx,
            &caller,
            &request,
            &credential("username"),
            &credential("password"),
        )
        .await
        .map(Some),
        AuthMode::OAuth2Cc => direct::client_credentials(
            &ctx,
            &caller,
            &request,
            direct::ClientCredentials {
                client_id: Some(credential("client_id")),
                client_secret: Some(credential("client_secret")),
            },
        )
        .await
        .map(Some),
        _ => {
            return Ok(View::ok(render_form(
                &session,
                &target,
                Shown::default(),
                back,
            )));
        }
    };
    match outcome {
        Ok(Some(outcome)) => Ok(View::ok(views::connected(
            &outcome.provider_config_key,
            target.name(),
            &outcome.connection_id,
            reconnect,
        ))),
        Ok(None) => Ok(View::ok(views::popup(
            &key,
            target.name(),
            &oauth_url(&key, &request.params),
            reconnect,
        ))),
        Err(e) => {
            let failure = words::failure(&e, target.name(), &fields);
            let mut problems = BTreeMap::new();
            if let Some(field) = &failure.field {
                problems.insert(field.clone(), failure.text.clone());
            }
            Err(refuse(
                &session,
                Shown {
                    values,
                    problems,
                    failure: failure.field.is_none().then_some(failure),
                },
            ))
        }
    }
}

/// Where the popup starts the OAuth flow; the script adds the session token.
fn oauth_url(key: &str, params: &Map<String, Value>) -> String {
    let mut url = format!("/oauth/connect/{}?", layout::path_escape(key));
    for (name, value) in params {
        if let Value::String(value) = value {
            url.push_str(&format!(
                "params%5B{}%5D={}&",
                query_escape(name),
                query_escape(value)
            ));
        }
    }
    url
}

#[derive(Deserialize)]
struct ConnectedQuery {
    connection_id: String,
}

/// `GET /connect-ui/views/integrations/:key/connected`: after the OAuth popup reported its
/// connection.
async fn connected_view(
    State(ctx): State<Context>,
    ViewSession(session): ViewSession,
    Path(key): Path<String>,
    Query(query): Query<ConnectedQuery>,
) -> ViewResult {
    let target = target(&ctx, &session, &key).await?;
    let id = query.connection_id;
    if id.is_empty() || id.len() > 255 {
        return Err(View::failed(&Error::invalid(
            "connection_id",
            "must be 1 to 255 characters",
        )));
    }
    Ok(View::ok(views::connected(
        &key,
        target.name(),
        &id,
        session.reconnect.is_some(),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_popup_url_carries_the_connection_config() {
        let params = serde_json::json!({"sub domain": "a&b", "n": 1});
        assert_eq!(
            oauth_url("my key", params.as_object().unwrap()),
            "/oauth/connect/my%20key?params%5Bsub%20domain%5D=a%26b&"
        );
    }

    #[test]
    fn the_page_may_be_framed_but_loads_only_its_own_origin() {
        assert!(CSP.contains("frame-ancestors *"));
        assert!(CSP.contains("connect-src 'self'"));
        assert!(CSP.contains("script-src 'self';"));
        assert!(!CSP.contains("unsafe-inline"));
    }
}
