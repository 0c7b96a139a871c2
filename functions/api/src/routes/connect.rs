//! Connect sessions: `POST /connect/sessions` and `POST /connect/sessions/reconnect` (secret
//! key), `GET|DELETE /connect/session` (the session's own token).

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use lasso_services::Context;
use lasso_services::connect_sessions::{
    self, ConnectSession, IntegrationDefaults, NewReconnectSession, NewSession,
};
use lasso_services::connections::{EndUser, Organization};
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::{Map, Value, json};
use utoipa::ToSchema;
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouterExt};
use utoipa_axum::routes;

use crate::auth::{Env, SessionToken};
use crate::error::{ApiResult, ErrorBody};
use crate::extract::Body;

pub fn router() -> OpenApiRouter<Context> {
    OpenApiRouter::new()
        .routes(routes!(create))
        .routes(routes!(reconnect))
        // On the method router, so a preflight (OPTIONS) reaches it too.
        .routes(routes!(get_one, delete_one).layer(super::cors::session_token_endpoints()))
}

/// Nango's `EndUserInput`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct EndUserBody {
    id: String,
    email: Option<String>,
    display_name: Option<String>,
    tags: Option<BTreeMap<String, String>>,
}

impl From<EndUserBody> for EndUser {
    fn from(b: EndUserBody) -> Self {
        EndUser {
            id: b.id,
            email: b.email,
            display_name: b.display_name,
            tags: b.tags.map(|t| {
                t.into_iter()
                    .map(|(k, v)| (k, Value::String(v)))
                    .collect::<Map<_, _>>()
            }),
            organization: None,
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct OrganizationBody {
    id: String,
    display_name: Option<String>,
}

impl From<OrganizationBody> for Organization {
    fn from(b: OrganizationBody) -> Self {
        Organization {
            id: b.id,
            display_name: b.display_name,
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct SessionBody {
    end_user: Option<EndUserBody>,
    organization: Option<OrganizationBody>,
    allowed_integrations: Option<Vec<String>>,
    #[schema(value_type = Option<Object>)]
    integrations_config_defaults: Option<BTreeMap<String, IntegrationDefaults>>,
    tags: Option<BTreeMap<String, String>>,
    webhook_url_override: Option<String>,
    /// Nango's Connect UI texts (`{integration: {docs_connect}}`): accepted and ignored, Lasso's
    /// Connect UI has no per-integration texts.
    #[serde(default, rename = "overrides")]
    #[schema(value_type = Option<Object>)]
    _overrides: Option<IgnoredAny>,
}

/// The answer to a created session. `connect_link` opens the hosted Connect UI in a tab; the
/// token rides in the URL's fragment, which browsers never send to a server (nor in a Referer).
fn token_json(ctx: &Context, token: &str, session: &ConnectSession) -> Json<Value> {
    let connect_link = format!(
        "{}/connect-ui/#session_token={token}",
        ctx.config.public_url.trim_end_matches('/')
    );
    Json(json!({"data": {
        "token": token,
        "connect_link": connect_link,
        "expires_at": session.expires_at,
    }}))
}

/// Creates a connect session for an end user; its token authorizes the Connect UI and the frontend SDK.
#[utoipa::path(
    post,
    path = "/connect/sessions",
    tag = "connect",
    security(("secret_key" = [])),
    request_body = SessionBody,
    responses(
        (status = 201, description = "`{\"data\": {token, connect_link, expires_at}}`", body = Object),
        (status = "default", description = "An error", body = ErrorBody),
    ),
)]
async fn create(
    State(ctx): State<Context>,
    Env(env): Env,
    Body(body): Body<SessionBody>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    lasso_services::webhooks::check_destination(
        &ctx,
        "webhook_url_override",
        body.webhook_url_override.as_deref(),
    )
    .await?;
    let (token, session) = connect_sessions::create(
        &ctx.db,
        env.id,
        NewSession {
            end_user: body.end_user.map(Into::into),
            organization: body.organization.map(Into::into),
            allowed_integrations: body.allowed_integrations,
            integrations_config_defaults: body.integrations_config_defaults,
            tags: body.tags,
            webhook_url_override: body.webhook_url_override,
        },
    )
    .await?;
    Ok((StatusCode::CREATED, token_json(&ctx, &token, &session)))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct ReconnectBody {
    connection_id: String,
    integration_id: String,
    end_user: Option<EndUserBody>,
    organization: Option<OrganizationBody>,
    #[schema(value_type = Option<Object>)]
    integrations_config_defaults: Option<BTreeMap<String, IntegrationDefaults>>,
    tags: Option<BTreeMap<String, String>>,
    webhook_url_override: Option<String>,
    /// Nango's Connect UI texts (`{integration: {docs_connect}}`): accepted and ignored, Lasso's
    /// Connect UI has no per-integration texts.
    #[serde(default, rename = "overrides")]
    #[schema(value_type = Option<Object>)]
    _overrides: Option<IgnoredAny>,
}

/// Creates a connect session that re-authorizes an existing connection.
#[utoipa::path(
    post,
    path = "/connect/sessions/reconnect",
    tag = "connect",
    security(("secret_key" = [])),
    request_body = ReconnectBody,
    responses(
        (status = 201, description = "`{\"data\": {token, connect_link, expires_at}}`", body = Object),
        (status = "default", description = "An error", body = ErrorBody),
    ),
)]
async fn reconnect(
    State(ctx): State<Context>,
    Env(env): Env,
    Body(body): Body<ReconnectBody>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    lasso_services::webhooks::check_destination(
        &ctx,
        "webhook_url_override",
        body.webhook_url_override.as_deref(),
    )
    .await?;
    let (token, session) = connect_sessions::create_reconnect(
        &ctx.db,
        env.id,
        NewReconnectSession {
            connection_id: body.connection_id,
            integration_id: body.integration_id,
            end_user: body.end_user.map(Into::into),
            organization: body.organization.map(Into::into),
            integrations_config_defaults: body.integrations_config_defaults,
            tags: body.tags,
            webhook_url_override: body.webhook_url_override,
        },
    )
    .await?;
    Ok((StatusCode::CREATED, token_json(&ctx, &token, &session)))
}

/// The session of the token: Nango's `ConnectSessionOutput`, without the Connect UI settings.
#[utoipa::path(
    get,
    path = "/connect/session",
    tag = "connect",
    security(("connect_session_token" = [])),
    responses(
        (status = 200, description = "`{\"data\": {endUser, tags, expires_at, ...}}`", body = Object),
        (status = "default", description = "An error", body = ErrorBody),
    ),
)]
async fn get_one(SessionToken(session): SessionToken) -> Json<Value> {
    let end_user = session.end_user.as_ref().map(|u| {
        json!({
            "id": u.id,
            "email": u.email,
            "display_name": u.display_name,
            "tags": u.tags,
            "organization": u.organization.as_ref().map(|o| json!({"id": o.id, "display_name": o.display_name})),
        })
    });
    let mut data = json!({
        "endUser": end_user,
        "tags": session.tags,
        "expires_at": session.expires_at,
    });
    if let Some(allowed) = &session.allowed_integrations {
        data["allowed_integrations"] = json!(allowed);
    }
    if !session.integrations_config_defaults.is_empty() {
        data["integrations_config_defaults"] = json!(session.integrations_config_defaults);
    }
    if let Some(url) = &session.webhook_url_override {
        data["webhook_url_override"] = json!(url);
    }
    if session.reconnect.is_some() {
        data["isReconnecting"] = json!(true);
    }
    Json(json!({ "data": data }))
}

/// Ends the session of the token.
#[utoipa::path(
    delete,
    path = "/connect/session",
    tag = "connect",
    security(("connect_session_token" = [])),
    responses(
        (status = 204, description = "Deleted"),
        (status = "default", description = "An error", body = ErrorBody),
    ),
)]
async fn delete_one(
    State(ctx): State<Context>,
    SessionToken(session): SessionToken,
) -> ApiResult<StatusCode> {
    connect_sessions::delete(&ctx.db, session.id).await?;
    Ok(StatusCode::NO_CONTENT)
}
