use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use lasso_services::Context;
use lasso_services::environments::{self, EnvironmentVariable};
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::Env;
use crate::error::ApiResult;
use crate::extract::Body;

pub fn router() -> Router<Context> {
    Router::new()
        .route("/environment-variables", get(list_variables))
        .route("/environment", get(show).patch(update))
}

async fn list_variables(
    State(ctx): State<Context>,
    Env(env): Env,
) -> ApiResult<Json<Vec<EnvironmentVariable>>> {
    Ok(Json(
        environments::variables(&ctx.db, &ctx.cipher, env.id).await?,
    ))
}

/// The environment's settings (Lasso's own endpoint; Nango keeps these in its dashboard).
async fn show(State(ctx): State<Context>, Env(env): Env) -> ApiResult<Json<Value>> {
    let webhook = environments::webhook_config(&ctx.db, &ctx.cipher, env.id).await?;
    Ok(Json(json!({
        "name": env.name,
        "uuid": env.uuid,
        "webhook_url": webhook.as_ref().and_then(|w| w.url.clone()),
        "webhook_signing_secret": webhook.as_ref().map(|w| w.signing_secret.expose_secret().to_string()),
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateBody {
    /// `null` turns webhooks off.
    webhook_url: Option<String>,
}

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
