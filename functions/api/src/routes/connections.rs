//! Connections: list, import, get (with credentials), patch, delete, and metadata, under
//! `/connections` and Nango's legacy `/connection`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use lasso_services::EnvironmentId;
use lasso_services::connections::{
    self, ConnectionPatch, Credentials, EndUser, ListFilter, NewConnection,
};
use lasso_services::refresh;
use lasso_services::{Context, integrations};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::auth::Env;
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::extract::{Body, Query};

pub fn router() -> Router<Context> {
    Router::new()
        .route("/connections", get(list).post(import))
        .route(
            "/connections/metadata",
            post(set_metadata).patch(update_metadata),
        )
        .route(
            "/connections/{connection_id}",
            get(get_one).patch(patch_one).delete(delete_one),
        )
        // Nango's singular legacy routes, which the `nango` CLI (`nango dryrun` reads
        // `GET /connection/:id`) and older clients still call: the same handlers.
        .route("/connection", get(list).post(import))
        .route(
            "/connection/metadata",
            post(set_metadata).patch(update_metadata),
        )
        .route(
            "/connection/{connection_id}",
            get(get_one).patch(patch_one).delete(delete_one),
        )
}

async fn list(
    State(ctx): State<Context>,
    Env(env): Env,
    Query(params): Query<Vec<(String, String)>>,
) -> ApiResult<Json<Value>> {
    let mut filter = ListFilter {
        limit: 100,
        ..Default::default()
    };
    let number = |name: &str, v: &str| {
        v.parse::<i64>()
            .map_err(|_| ApiError::invalid(name, format!("expected a whole number, got `{v}`")))
    };
    for (key, value) in params {
        match key.as_str() {
            "connectionId" | "connection_id" => filter.connection_id = Some(value),
            "search" => filter.search = Some(value),
            "endUserId" => filter.end_user_id = Some(value),
            "endUserOrganizationId" => filter.end_user_organization_id = Some(value),
            "integrationId" => filter.integration_ids.extend(
                value
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string),
            ),
            "limit" => filter.limit = number("limit", &value)?,
            "page" => filter.page = number("page", &value)?,
            other => match other
                .strip_prefix("tags[")
                .and_then(|k| k.strip_suffix(']'))
            {
                Some(tag) => {
                    // Stored keys are lower-case (`normalize_tags`).
                    filter.tags.insert(tag.to_lowercase(), Value::String(value));
                }
                None => {
                    return Err(ApiError::invalid(other, "unknown query parameter"));
                }
            },
        }
    }
    let found = connections::list(&ctx.db, env.id, &filter).await?;
    Ok(Json(json!({
        "connections": found.iter().map(connections::summary_json).collect::<Vec<_>>()
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ImportBody {
    connection_id: Option<String>,
    provider_config_key: String,
    metadata: Option<Map<String, Value>>,
    connection_config: Option<Map<String, Value>>,
    credentials: Value,
    end_user: Option<EndUser>,
    tags: Option<Map<String, Value>>,
    webhook_url_override: Option<String>,
}

async fn import(
    State(ctx): State<Context>,
    Env(env): Env,
    Body(body): Body<ImportBody>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let credentials = Credentials::from_input(&body.credentials)?;
    let tags = connections::normalize_tags(body.tags.unwrap_or_default(), "tags")?;
    lasso_services::webhooks::check_destination(
        &ctx,
        "webhook_url_override",
        body.webhook_url_override.as_deref(),
    )
    .await?;
    let integration = integrations::get(&ctx.db, env.id, &body.provider_config_key).await?;
    let connection_id = body
        .connection_id
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let (connection, _) = connections::upsert(
        &ctx.db,
        &ctx.cipher,
        &integration,
        NewConnection {
            connection_id,
            credentials,
            connection_config: body.connection_config.unwrap_or_default(),
            secret_config: ctx
                .providers
                .get(&integration.provider)
                .map(|p| p.secret_config_fields())
                .unwrap_or_default(),
            metadata: body.metadata.map(Value::Object),
            end_user: body.end_user,
            tags,
            webhook_url_override: body.webhook_url_override,
        },
    )
    .await?;
    lasso_services::syncs::connection_stored(&ctx, connection.id).await;
    Ok((
        StatusCode::CREATED,
        Json(connections::public_json(
            &connection,
            &connection.credentials,
        )),
    ))
}

#[derive(Deserialize)]
struct GetParams {
    provider_config_key: Option<String>,
    #[serde(default)]
    refresh_token: bool,
    #[serde(default)]
    force_refresh: bool,
}

fn required_key(key: Option<String>) -> ApiResult<String> {
    key.filter(|k| !k.is_empty()).ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::MissingProviderConfigKey,
            "the provider_config_key query parameter is required",
        )
    })
}

async fn get_one(
    State(ctx): State<Context>,
    Env(env): Env,
    Path(connection_id): Path<String>,
    Query(params): Query<GetParams>,
) -> ApiResult<Json<Value>> {
    let key = required_key(params.provider_config_key)?;
    let connection = connections::get(&ctx.db, &ctx.cipher, env.id, &key, &connection_id).await?;
    let connection = refresh::fresh(&ctx, connection, params.force_refresh).await?;
    connections::touch_last_fetched(&ctx.db, connection.uuid).await?;
    let credentials = if params.refresh_token {
        connection.credentials.clone()
    } else {
        connection.credentials.without_refresh_token()
    };
    Ok(Json(connections::public_json(&connection, &credentials)))
}

#[derive(Deserialize)]
struct KeyParam {
    provider_config_key: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PatchBody {
    end_user: Option<EndUser>,
    tags: Option<Map<String, Value>>,
    webhook_url_override: Option<String>,
}

async fn patch_one(
    State(ctx): State<Context>,
    Env(env): Env,
    Path(connection_id): Path<String>,
    Query(params): Query<KeyParam>,
    Body(body): Body<PatchBody>,
) -> ApiResult<Json<Value>> {
    let key = required_key(params.provider_config_key)?;
    let tags = body
        .tags
        .map(|tags| connections::normalize_tags(tags, "tags"))
        .transpose()?;
    lasso_services::webhooks::check_destination(
        &ctx,
        "webhook_url_override",
        body.webhook_url_override.as_deref(),
    )
    .await?;
    connections::patch(
        &ctx.db,
        env.id,
        &key,
        &connection_id,
        ConnectionPatch {
            end_user: body.end_user,
            tags,
            webhook_url_override: body.webhook_url_override,
        },
    )
    .await?;
    Ok(Json(json!({"success": true})))
}

async fn delete_one(
    State(ctx): State<Context>,
    Env(env): Env,
    Path(connection_id): Path<String>,
    Query(params): Query<KeyParam>,
) -> ApiResult<Json<Value>> {
    let key = required_key(params.provider_config_key)?;
    connections::delete(&ctx.db, env.id, &key, &connection_id).await?;
    Ok(Json(json!({"success": true})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MetadataBody {
    connection_id: Value,
    provider_config_key: String,
    metadata: Map<String, Value>,
}

impl MetadataBody {
    fn connection_ids(&self) -> ApiResult<Vec<String>> {
        let bad = || ApiError::invalid("connection_id", "expected a string or an array of strings");
        match &self.connection_id {
            Value::String(s) => Ok(vec![s.clone()]),
            Value::Array(items) => items
                .iter()
                .map(|v| v.as_str().map(str::to_string).ok_or_else(bad))
                .collect(),
            _ => Err(bad()),
        }
    }
}

async fn write_metadata(
    ctx: &Context,
    env_id: EnvironmentId,
    body: MetadataBody,
    merge: bool,
) -> ApiResult<Json<Value>> {
    let ids = body.connection_ids()?;
    connections::write_metadata(
        &ctx.db,
        env_id,
        &body.provider_config_key,
        &ids,
        &body.metadata,
        merge,
    )
    .await?;
    Ok(Json(json!({
        "connection_id": body.connection_id,
        "provider_config_key": body.provider_config_key,
        "metadata": body.metadata,
    })))
}

async fn set_metadata(
    State(ctx): State<Context>,
    Env(env): Env,
    Body(body): Body<MetadataBody>,
) -> ApiResult<Json<Value>> {
    write_metadata(&ctx, env.id, body, false).await
}

async fn update_metadata(
    State(ctx): State<Context>,
    Env(env): Env,
    Body(body): Body<MetadataBody>,
) -> ApiResult<Json<Value>> {
    write_metadata(&ctx, env.id, body, true).await
}
