//! Integrations CRUD: `GET|POST /integrations`, `GET|PATCH|DELETE /integrations/:uniqueKey`.

use axum::Json;
use axum::extract::{Path, State};
use lasso_services::environments::Environment;
use lasso_services::integrations::{
    self, AppCredentials, Integration, IntegrationPatch, NewIntegration,
};
use lasso_services::{Context, Error};
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Env;
use crate::error::{ApiResult, ErrorBody};
use crate::extract::{Body, Query};

pub fn router() -> OpenApiRouter<Context> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(get_one, update, delete_one))
}

/// Nango's `ApiPublicIntegration`, with the optional includes.
fn integration_json(
    ctx: &Context,
    env: &Environment,
    i: &Integration,
    include_credentials: bool,
    include_webhook: bool,
) -> ApiResult<Value> {
    let mut out = json!({
        "unique_key": i.unique_key,
        "provider": i.provider,
        "display_name": i.display_name.clone().or_else(|| {
            ctx.providers.get(&i.provider).map(|p| p.display_name.clone())
        }),
        "logo": lasso_services::providers::logo_url(&i.provider),
        "forward_webhooks": i.forward_webhooks,
        "created_at": i.created_at,
        "updated_at": i.updated_at,
    });
    if include_credentials {
        let auth_mode = ctx
            .providers
            .get(&i.provider)
            .map(|p| p.auth_mode.as_str().to_string());
        out["credentials"] = match (&i.client_id, auth_mode) {
            (None, _) => Value::Null,
            (Some(client_id), mode) => json!({
                "type": mode.unwrap_or_else(|| "OAUTH2".into()),
                "client_id": client_id,
                "client_secret": i.client_secret(&ctx.cipher)?.map(|s| s.expose_secret().to_string()),
                "scopes": i.scopes,
                "webhook_secret": i.webhook_secret(&ctx.cipher)?.map(|s| s.expose_secret().to_string()),
            }),
        };
    }
    if include_webhook {
        out["webhook_url"] = json!(format!(
            "{}/webhook/{}/{}",
            ctx.config.public_url, env.uuid, i.unique_key
        ));
    }
    Ok(out)
}

/// The environment's integrations.
#[utoipa::path(
    get,
    path = "/integrations",
    tag = "integrations",
    security(("secret_key" = [])),
    responses(
        (status = 200, description = "`{\"data\": [integration]}`", body = Object),
        (status = "default", description = "An error", body = ErrorBody),
    ),
)]
async fn list(State(ctx): State<Context>, Env(env): Env) -> ApiResult<Json<Value>> {
    let all = integrations::list(&ctx.db, env.id).await?;
    let data = all
        .iter()
        .map(|i| integration_json(&ctx, &env, i, false, false))
        .collect::<ApiResult<Vec<_>>>()?;
    Ok(Json(json!({ "data": data })))
}

/// The `credentials` object of create and update bodies.
#[derive(Deserialize, ToSchema)]
struct CredentialsBody {
    #[serde(rename = "type")]
    kind: String,
    client_id: Option<String>,
    client_secret: Option<String>,
    scopes: Option<String>,
    webhook_secret: Option<String>,
}

impl CredentialsBody {
    fn into_app_credentials(self) -> Result<AppCredentials, Error> {
        if !matches!(self.kind.as_str(), "OAUTH2" | "OAUTH1" | "TBA") {
            return Err(Error::invalid(
                "credentials.type",
                format!("`{}` is not supported here; use OAUTH2", self.kind),
            ));
        }
        Ok(AppCredentials {
            client_id: self.client_id,
            client_secret: self.client_secret,
            scopes: self.scopes,
            webhook_secret: self.webhook_secret,
        })
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    provider: String,
    unique_key: String,
    display_name: Option<String>,
    credentials: Option<CredentialsBody>,
    forward_webhooks: Option<bool>,
    #[schema(value_type = Option<Object>)]
    integration_config: Option<Map<String, Value>>,
    #[schema(value_type = Option<Object>)]
    custom: Option<Map<String, Value>>,
}

/// Creates an integration.
#[utoipa::path(
    post,
    path = "/integrations",
    tag = "integrations",
    security(("secret_key" = [])),
    request_body = CreateBody,
    responses(
        (status = 200, description = "`{\"data\": integration}`: `unique_key`, `provider`, `display_name`, `logo`, `forward_webhooks`, `created_at`, `updated_at`", body = Object),
        (status = "default", description = "An error", body = ErrorBody),
    ),
)]
async fn create(
    State(ctx): State<Context>,
    Env(env): Env,
    Body(body): Body<CreateBody>,
) -> ApiResult<Json<Value>> {
    if ctx.providers.get(&body.provider).is_none() {
        return Err(Error::invalid(
            "provider",
            format!(
                "`{}` is not in the provider catalog (see GET /providers)",
                body.provider
            ),
        )
        .into());
    }
    let mut custom = body.custom.unwrap_or_default();
    custom.extend(body.integration_config.unwrap_or_default());
    let integration = integrations::create(
        &ctx.db,
        &ctx.cipher,
        env.id,
        NewIntegration {
            unique_key: body.unique_key,
            provider: body.provider,
            display_name: body.display_name,
            credentials: body
                .credentials
                .map(CredentialsBody::into_app_credentials)
                .transpose()?
                .unwrap_or_default(),
            forward_webhooks: body.forward_webhooks,
            custom,
        },
    )
    .await?;
    Ok(Json(
        json!({ "data": integration_json(&ctx, &env, &integration, false, false)? }),
    ))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct IncludeParams {
    /// `include=credentials`, `include=webhook`, or both comma-separated.
    include: Option<String>,
    #[serde(rename = "include[]")]
    include_array: Option<String>,
}

/// One integration, with its credentials and webhook URL when `include` asks for them.
#[utoipa::path(
    get,
    path = "/integrations/{unique_key}",
    tag = "integrations",
    security(("secret_key" = [])),
    params(("unique_key" = String, Path, description = "The integration's unique key"), IncludeParams),
    responses(
        (status = 200, description = "`{\"data\": integration}`: `unique_key`, `provider`, `display_name`, `logo`, `forward_webhooks`, `created_at`, `updated_at`", body = Object),
        (status = "default", description = "An error", body = ErrorBody),
    ),
)]
async fn get_one(
    State(ctx): State<Context>,
    Env(env): Env,
    Path(unique_key): Path<String>,
    Query(params): Query<IncludeParams>,
) -> ApiResult<Json<Value>> {
    let includes: Vec<String> = [params.include, params.include_array]
        .into_iter()
        .flatten()
        .flat_map(|s| s.split(',').map(str::to_string).collect::<Vec<_>>())
        .collect();
    let integration = integrations::get(&ctx.db, env.id, &unique_key).await?;
    Ok(Json(json!({
        "data": integration_json(
            &ctx,
            &env,
            &integration,
            includes.iter().any(|i| i == "credentials"),
            includes.iter().any(|i| i == "webhook"),
        )?
    })))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct UpdateBody {
    unique_key: Option<String>,
    display_name: Option<String>,
    credentials: Option<CredentialsBody>,
    forward_webhooks: Option<bool>,
    #[schema(value_type = Option<Object>)]
    integration_config: Option<Map<String, Value>>,
    #[schema(value_type = Option<Object>)]
    custom: Option<Map<String, Value>>,
}

/// Updates an integration.
#[utoipa::path(
    patch,
    path = "/integrations/{unique_key}",
    tag = "integrations",
    security(("secret_key" = [])),
    params(("unique_key" = String, Path, description = "The integration's unique key")),
    request_body = UpdateBody,
    responses(
        (status = 200, description = "`{\"data\": integration}`: `unique_key`, `provider`, `display_name`, `logo`, `forward_webhooks`, `created_at`, `updated_at`", body = Object),
        (status = "default", description = "An error", body = ErrorBody),
    ),
)]
async fn update(
    State(ctx): State<Context>,
    Env(env): Env,
    Path(unique_key): Path<String>,
    Body(body): Body<UpdateBody>,
) -> ApiResult<Json<Value>> {
    let custom = match (body.custom, body.integration_config) {
        (None, None) => None,
        (a, b) => {
            let mut merged = a.unwrap_or_default();
            merged.extend(b.unwrap_or_default());
            Some(merged)
        }
    };
    let integration = integrations::update(
        &ctx.db,
        &ctx.cipher,
        env.id,
        &unique_key,
        IntegrationPatch {
            unique_key: body.unique_key,
            display_name: body.display_name,
            credentials: body
                .credentials
                .map(CredentialsBody::into_app_credentials)
                .transpose()?,
            forward_webhooks: body.forward_webhooks,
            custom,
        },
    )
    .await?;
    Ok(Json(
        json!({ "data": integration_json(&ctx, &env, &integration, false, false)? }),
    ))
}

/// Deletes an integration and its connections.
#[utoipa::path(
    delete,
    path = "/integrations/{unique_key}",
    tag = "integrations",
    security(("secret_key" = [])),
    params(("unique_key" = String, Path, description = "The integration's unique key")),
    responses(
        (status = 200, description = "`{\"success\": true}`", body = Object),
        (status = "default", description = "An error", body = ErrorBody),
    ),
)]
async fn delete_one(
    State(ctx): State<Context>,
    Env(env): Env,
    Path(unique_key): Path<String>,
) -> ApiResult<Json<Value>> {
    integrations::delete(&ctx.db, env.id, &unique_key).await?;
    Ok(Json(json!({ "success": true })))
}
