use axum::Json;
use axum::extract::State;
use lasso_services::Context;
use lasso_services::environments::{self, EnvironmentVariable};
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Env;
use crate::error::{ApiResult, ErrorBody};
use crate::extract::Body;

pub fn router() -> OpenApiRouter<Context> {
    OpenApiRouter::new()
        .routes(routes!(list_variables))
        .routes(routes!(show, update))
}

/// The environment's variables, `[{"name", "value"}]`.
#[utoipa::path(
    get,
    path = "/environment-variables",
    tag = "environment",
    security(("secret_key" = [])),
    responses(
        (status = 200, description = "The environment's variables", body = Vec<EnvironmentVariable>),
        (status = "default", description = "An error", body = ErrorBody),
    ),
)]
async fn list_variables(
    State(ctx): State<Context>,
    Env(env): Env,
) -> ApiResult<Json<Vec<EnvironmentVariable>>> {
    Ok(Json(
        environments::variables(&ctx.db, &ctx.cipher, env.id).await?,
    ))
}

/// The environment's settings (Lasso's own endpoint; Nango keeps these in its dashboard).
#[utoipa::path(
    get,
    path = "/environment",
    tag = "environment",
    security(("secret_key" = [])),
    responses(
        (status = 200, description = "`{name, uuid, webhook_url, webhook_signing_secret}`", body = Object),
        (status = "default", description = "An error", body = ErrorBody),
    ),
)]
async fn show(State(ctx): State<Context>, Env(env): Env) -> ApiResult<Json<Value>> {
    let webhook = environments::webhook_config(&ctx.db, &ctx.cipher, env.id).await?;
    Ok(Json(json!({
        "name": env.name,
        "uuid": env.uuid,
        "webhook_url": webhook.as_ref().and_then(|w| w.url.clone()),
        "webhook_signing_secret": webhook.as_ref().map(|w| w.signing_secret.expose_secret().to_string()),
    })))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct UpdateBody {
    /// `null` turns webhooks off.
    webhook_url: Option<String>,
}

/// Sets the environment's webhook URL (`null` turns webhooks off).
#[utoipa::path(
    patch,
    path = "/environment",
    tag = "environment",
    security(("secret_key" = [])),
    request_body = UpdateBody,
    responses(
        (status = 200, description = "`{name, uuid, webhook_url, webhook_signing_secret}`", body = Object),
        (status = "default", description = "An error", body = ErrorBody),
    ),
)]
async fn update(
    State(ctx): State<Context>,
    Env(env): Env,
    Body(body): Body<UpdateBody>,
) -> ApiResult<Json<Value>> {
    lasso_services::webhooks::check_destination(&ctx, "webhook_url", body.webhook_url.as_deref())
        .await?;
    let webhook =
        environments::set_webhook_url(&ctx.db, &ctx.cipher, env.id, body.webhook_url.as_deref())
            .await?;
    Ok(Json(json!({
        "name": env.name,
        "uuid": env.uuid,
        "webhook_url": webhook.url,
        "webhook_signing_secret": webhook.signing_secret.expose_secret(),
    })))
}
