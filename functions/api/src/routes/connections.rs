//! Connections: list, import, get (with credentials), patch, delete, and metadata, under
//! `/connections` and Nango's legacy `/connection`.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use lasso_services::EnvironmentId;
use lasso_services::connections::{
    self, ConnectionPatch, Credentials, EndUser, ListFilter, NewConnection,
};
use lasso_services::refresh;
use lasso_services::{Context, integrations};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Env;
use crate::error::{ApiError, ApiResult, ErrorBody, ErrorCode};
use crate::extract::{Body, Query};

pub fn router() -> OpenApiRouter<Context> {
    OpenApiRouter::new()
        .routes(routes!(list, import))
        .routes(routes!(set_metadata, update_metadata))
        .routes(routes!(get_one, patch_one, delete_one))
        .merge(legacy::router())
}

/// Nango's singular legacy routes, which the `nango` CLI (`nango dryrun` reads
/// `GET /connection/:id`) and older clients still call: the same handlers, each under its own
/// operation of the document.
mod legacy {
    use super::*;

    pub fn router() -> OpenApiRouter<Context> {
        OpenApiRouter::new()
            .routes(routes!(list, import))
            .routes(routes!(set_metadata, update_metadata))
            .routes(routes!(get_one, patch_one, delete_one))
    }

    /// The environment's connections, filtered. (Nango's legacy singular path)
    #[utoipa::path(
        get,
        path = "/connection",
        tag = "connections",
        security(("secret_key" = [])),
        params(("connectionId" = Option<String>, Query, description = "Only this connection id"), ("search" = Option<String>, Query, description = "Matches connection ids and end users"), ("endUserId" = Option<String>, Query), ("endUserOrganizationId" = Option<String>, Query), ("integrationId" = Option<String>, Query, description = "Integration unique keys, comma-separated"), ("limit" = Option<i64>, Query, description = "Page size (default 100)"), ("page" = Option<i64>, Query, description = "Page number, from 0")),
        responses(
            (status = 200, description = "`{\"connections\": [connection summary]}`", body = Object),
            (status = "default", description = "An error", body = ErrorBody),
        ),
    )]
    async fn list(
        ctx: State<Context>,
        env: Env,
        params: Query<Vec<(String, String)>>,
    ) -> ApiResult<Json<Value>> {
        super::list(ctx, env, params).await
    }

    /// Imports a connection with credentials obtained elsewhere. (Nango's legacy singular path)
    #[utoipa::path(
        post,
        path = "/connection",
        tag = "connections",
        security(("secret_key" = [])),
        request_body = ImportBody,
        responses(
            (status = 201, description = "The connection in Nango's `ApiPublicConnectionFull` shape, with its credentials", body = Object),
            (status = "default", description = "An error", body = ErrorBody),
        ),
    )]
    async fn import(
        ctx: State<Context>,
        env: Env,
        body: Body<ImportBody>,
    ) -> ApiResult<(StatusCode, Json<Value>)> {
        super::import(ctx, env, body).await
    }

    /// Replaces the metadata of one or more connections. (Nango's legacy singular path)
    #[utoipa::path(
        post,
        path = "/connection/metadata",
        tag = "connections",
        security(("secret_key" = [])),
        request_body = MetadataBody,
        responses(
            (status = 200, description = "`{connection_id, provider_config_key, metadata}`", body = Object),
            (status = "default", description = "An error", body = ErrorBody),
        ),
    )]
    async fn set_metadata(
        ctx: State<Context>,
        env: Env,
        body: Body<MetadataBody>,
    ) -> ApiResult<Json<Value>> {
        super::set_metadata(ctx, env, body).await
    }

    /// Merges into the metadata of one or more connections. (Nango's legacy singular path)
    #[utoipa::path(
        patch,
        path = "/connection/metadata",
        tag = "connections",
        security(("secret_key" = [])),
        request_body = MetadataBody,
        responses(
            (status = 200, description = "`{connection_id, provider_config_key, metadata}`", body = Object),
            (status = "default", description = "An error", body = ErrorBody),
        ),
    )]
    async fn update_metadata(
        ctx: State<Context>,
        env: Env,
        body: Body<MetadataBody>,
    ) -> ApiResult<Json<Value>> {
        super::update_metadata(ctx, env, body).await
    }

    /// One connection with its credentials, refreshed when they are expired. (Nango's legacy singular path)
    #[utoipa::path(
        get,
        path = "/connection/{connection_id}",
        tag = "connections",
        security(("secret_key" = [])),
        params(("connection_id" = String, Path, description = "The connection id"), GetParams),
        responses(
            (status = 200, description = "The connection in Nango's `ApiPublicConnectionFull` shape, with its credentials", body = Object),
            (status = "default", description = "An error", body = ErrorBody),
        ),
    )]
    async fn get_one(
        ctx: State<Context>,
        env: Env,
        id: Path<String>,
        params: Query<GetParams>,
    ) -> ApiResult<Json<Value>> {
        super::get_one(ctx, env, id, params).await
    }

    /// Updates a connection's end user, tags or webhook URL override. (Nango's legacy singular path)
    #[utoipa::path(
        patch,
        path = "/connection/{connection_id}",
        tag = "connections",
        security(("secret_key" = [])),
        params(("connection_id" = String, Path, description = "The connection id"), KeyParam),
        request_body = PatchBody,
        responses(
            (status = 200, description = "`{\"success\": true}`", body = Object),
            (status = "default", description = "An error", body = ErrorBody),
        ),
    )]
    async fn patch_one(
        ctx: State<Context>,
        env: Env,
        id: Path<String>,
        params: Query<KeyParam>,
        body: Body<PatchBody>,
    ) -> ApiResult<Json<Value>> {
        super::patch_one(ctx, env, id, params, body).await
    }

    /// Deletes a connection. (Nango's legacy singular path)
    #[utoipa::path(
        delete,
        path = "/connection/{connection_id}",
        tag = "connections",
        security(("secret_key" = [])),
        params(("connection_id" = String, Path, description = "The connection id"), KeyParam),
        responses(
            (status = 200, description = "`{\"success\": true}`", body = Object),
            (status = "default", description = "An error", body = ErrorBody),
        ),
    )]
    async fn delete_one(
        ctx: State<Context>,
        env: Env,
        id: Path<String>,
        params: Query<KeyParam>,
    ) -> ApiResult<Json<Value>> {
        super::delete_one(ctx, env, id, params).await
    }
}

/// The environment's connections, filtered.
#[utoipa::path(
    get,
    path = "/connections",
    tag = "connections",
    security(("secret_key" = [])),
    params(("connectionId" = Option<String>, Query, description = "Only this connection id"), ("search" = Option<String>, Query, description = "Matches connection ids and end users"), ("endUserId" = Option<String>, Query), ("endUserOrganizationId" = Option<String>, Query), ("integrationId" = Option<String>, Query, description = "Integration unique keys, comma-separated"), ("limit" = Option<i64>, Query, description = "Page size (default 100)"), ("page" = Option<i64>, Query, description = "Page number, from 0")),
    responses(
        (status = 200, description = "`{\"connections\": [connection summary]}`", body = Object),
        (status = "default", description = "An error", body = ErrorBody),
    ),
)]
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

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct ImportBody {
    connection_id: Option<String>,
    provider_config_key: String,
    #[schema(value_type = Option<Object>)]
    metadata: Option<Map<String, Value>>,
    #[schema(value_type = Option<Object>)]
    connection_config: Option<Map<String, Value>>,
    credentials: Value,
    end_user: Option<EndUser>,
    #[schema(value_type = Option<Object>)]
    tags: Option<Map<String, Value>>,
    webhook_url_override: Option<String>,
}

/// Imports a connection with credentials obtained elsewhere.
#[utoipa::path(
    post,
    path = "/connections",
    tag = "connections",
    security(("secret_key" = [])),
    request_body = ImportBody,
    responses(
        (status = 201, description = "The connection in Nango's `ApiPublicConnectionFull` shape, with its credentials", body = Object),
        (status = "default", description = "An error", body = ErrorBody),
    ),
)]
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

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
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

/// One connection with its credentials, refreshed when they are expired.
#[utoipa::path(
    get,
    path = "/connections/{connection_id}",
    tag = "connections",
    security(("secret_key" = [])),
    params(("connection_id" = String, Path, description = "The connection id"), GetParams),
    responses(
        (status = 200, description = "The connection in Nango's `ApiPublicConnectionFull` shape, with its credentials", body = Object),
        (status = "default", description = "An error", body = ErrorBody),
    ),
)]
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

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct KeyParam {
    provider_config_key: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct PatchBody {
    end_user: Option<EndUser>,
    #[schema(value_type = Option<Object>)]
    tags: Option<Map<String, Value>>,
    webhook_url_override: Option<String>,
}

/// Updates a connection's end user, tags or webhook URL override.
#[utoipa::path(
    patch,
    path = "/connections/{connection_id}",
    tag = "connections",
    security(("secret_key" = [])),
    params(("connection_id" = String, Path, description = "The connection id"), KeyParam),
    request_body = PatchBody,
    responses(
        (status = 200, description = "`{\"success\": true}`", body = Object),
        (status = "default", description = "An error", body = ErrorBody),
    ),
)]
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

/// Deletes a connection.
#[utoipa::path(
    delete,
    path = "/connections/{connection_id}",
    tag = "connections",
    security(("secret_key" = [])),
    params(("connection_id" = String, Path, description = "The connection id"), KeyParam),
    responses(
        (status = 200, description = "`{\"success\": true}`", body = Object),
        (status = "default", description = "An error", body = ErrorBody),
    ),
)]
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

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct MetadataBody {
    connection_id: Value,
    provider_config_key: String,
    #[schema(value_type = Object)]
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

/// Replaces the metadata of one or more connections.
#[utoipa::path(
    post,
    path = "/connections/metadata",
    tag = "connections",
    security(("secret_key" = [])),
    request_body = MetadataBody,
    responses(
        (status = 200, description = "`{connection_id, provider_config_key, metadata}`", body = Object),
        (status = "default", description = "An error", body = ErrorBody),
    ),
)]
async fn set_metadata(
    State(ctx): State<Context>,
    Env(env): Env,
    Body(body): Body<MetadataBody>,
) -> ApiResult<Json<Value>> {
    write_metadata(&ctx, env.id, body, false).await
}

/// Merges into the metadata of one or more connections.
#[utoipa::path(
    patch,
    path = "/connections/metadata",
    tag = "connections",
    security(("secret_key" = [])),
    request_body = MetadataBody,
    responses(
        (status = 200, description = "`{connection_id, provider_config_key, metadata}`", body = Object),
        (status = "default", description = "An error", body = ErrorBody),
    ),
)]
async fn update_metadata(
    State(ctx): State<Context>,
    Env(env): Env,
    Body(body): Body<MetadataBody>,
) -> ApiResult<Json<Value>> {
    write_metadata(&ctx, env.id, body, true).await
}
