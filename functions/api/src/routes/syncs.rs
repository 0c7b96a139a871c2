//! Nango's sync API: `POST /sync/trigger`, `POST /sync/pause`, `POST /sync/start`,
//! `GET /sync/status` and `PUT /sync/update-connection-frequency`.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use lasso_services::Context;
use lasso_services::syncs::{self, Selection, SyncIdentifier, SyncMode};
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Env;
use crate::connection_headers::text;
use crate::error::{ApiError, ApiResult, ErrorBody, ErrorCode};
use crate::extract::{Body, Query};

pub fn router() -> OpenApiRouter<Context> {
    OpenApiRouter::new()
        .routes(routes!(trigger))
        .routes(routes!(pause))
        .routes(routes!(start))
        .routes(routes!(status))
        .routes(routes!(update_connection_frequency))
}

fn names(syncs: Vec<SyncIdentifier>) -> ApiResult<Vec<String>> {
    Ok(syncs
        .into_iter()
        .map(SyncIdentifier::into_name)
        .collect::<Result<_, _>>()?)
}

fn non_empty(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.is_empty())
}

#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
struct TriggerOpts {
    #[serde(default)]
    reset: bool,
    #[serde(default, rename = "emptyCache")]
    empty_cache: bool,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct TriggerBody {
    syncs: Vec<SyncIdentifier>,
    provider_config_key: Option<String>,
    connection_id: Option<String>,
    sync_mode: Option<String>,
    #[serde(default)]
    full_resync: bool,
    #[serde(default)]
    opts: Option<TriggerOpts>,
}

/// Runs syncs now (incremental, or a full resync).
#[utoipa::path(
    post,
    path = "/sync/trigger",
    tag = "syncs",
    security(("secret_key" = [])),
    params(("Provider-Config-Key" = Option<String>, Header, description = "When the body has no `provider_config_key`"), ("Connection-Id" = Option<String>, Header, description = "When the body has no `connection_id`")),
    request_body = TriggerBody,
    responses(
        (status = 200, description = "`{\"success\": true}`", body = Object),
        (status = "default", description = "An error", body = ErrorBody),
    ),
)]
async fn trigger(
    State(ctx): State<Context>,
    Env(env): Env,
    headers: HeaderMap,
    Body(body): Body<TriggerBody>,
) -> ApiResult<Json<Value>> {
    // As in Nango, the body wins over the `Provider-Config-Key` / `Connection-Id` headers.
    let provider_config_key = non_empty(body.provider_config_key)
        .or(text(&headers, "Provider-Config-Key")?.map(str::to_string))
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                ErrorCode::MissingProviderConfigKey,
                "Missing provider_config_key. Provide it in the body or the Provider-Config-Key header.",
            )
        })?;
    let connection_id =
        non_empty(body.connection_id).or(text(&headers, "Connection-Id")?.map(str::to_string));
    let opts = body.opts.unwrap_or_default();
    let mode = SyncMode::from_request(
        body.sync_mode.as_deref(),
        opts.reset,
        opts.empty_cache,
        body.full_resync,
    )?;
    let selection = Selection {
        provider_config_key,
        connection_id,
        syncs: names(body.syncs)?,
    };
    syncs::trigger(&ctx, env.id, &selection, mode).await?;
    Ok(Json(json!({"success": true})))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct ScheduleBody {
    syncs: Vec<SyncIdentifier>,
    provider_config_key: String,
    connection_id: Option<String>,
}

impl ScheduleBody {
    fn selection(self) -> ApiResult<Selection> {
        Ok(Selection {
            provider_config_key: self.provider_config_key,
            connection_id: non_empty(self.connection_id),
            syncs: names(self.syncs)?,
        })
    }
}

/// Pauses syncs' schedules.
#[utoipa::path(
    post,
    path = "/sync/pause",
    tag = "syncs",
    security(("secret_key" = [])),
    request_body = ScheduleBody,
    responses(
        (status = 200, description = "`{\"success\": true}`", body = Object),
        (status = "default", description = "An error", body = ErrorBody),
    ),
)]
async fn pause(
    State(ctx): State<Context>,
    Env(env): Env,
    Body(body): Body<ScheduleBody>,
) -> ApiResult<Json<Value>> {
    syncs::pause(&ctx, env.id, &body.selection()?).await?;
    Ok(Json(json!({"success": true})))
}

/// Resumes syncs' schedules.
#[utoipa::path(
    post,
    path = "/sync/start",
    tag = "syncs",
    security(("secret_key" = [])),
    request_body = ScheduleBody,
    responses(
        (status = 200, description = "`{\"success\": true}`", body = Object),
        (status = "default", description = "An error", body = ErrorBody),
    ),
)]
async fn start(
    State(ctx): State<Context>,
    Env(env): Env,
    Body(body): Body<ScheduleBody>,
) -> ApiResult<Json<Value>> {
    syncs::start(&ctx, env.id, &body.selection()?).await?;
    Ok(Json(json!({"success": true})))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct StatusParams {
    /// `*`, or names (`name` or `name::variant`) separated by commas.
    syncs: String,
    provider_config_key: String,
    connection_id: Option<String>,
}

/// The state of syncs for one integration, or one connection.
#[utoipa::path(
    get,
    path = "/sync/status",
    tag = "syncs",
    security(("secret_key" = [])),
    params(StatusParams),
    responses(
        (status = 200, description = "`{\"syncs\": [status]}`", body = Object),
        (status = "default", description = "An error", body = ErrorBody),
    ),
)]
async fn status(
    State(ctx): State<Context>,
    Env(env): Env,
    Query(params): Query<StatusParams>,
) -> ApiResult<Json<Value>> {
    let syncs = if params.syncs.trim() == "*" {
        Vec::new()
    } else {
        let listed: Vec<SyncIdentifier> = params
            .syncs
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| SyncIdentifier::Name(s.to_string()))
            .collect();
        if listed.is_empty() {
            return Err(ApiError::invalid(
                "syncs",
                "name at least one sync, or `*` for all",
            ));
        }
        names(listed)?
    };
    let selection = Selection {
        provider_config_key: params.provider_config_key,
        connection_id: non_empty(params.connection_id),
        syncs,
    };
    let found = syncs::status(&ctx, env.id, &selection).await?;
    Ok(Json(json!({ "syncs": found })))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct FrequencyBody {
    sync_name: String,
    sync_variant: Option<String>,
    provider_config_key: String,
    connection_id: String,
    /// `every 5 minutes`; null goes back to the sync's own frequency.
    frequency: Option<String>,
}

/// Overrides a sync's frequency for one connection (`null` goes back to the sync's own).
#[utoipa::path(
    put,
    path = "/sync/update-connection-frequency",
    tag = "syncs",
    security(("secret_key" = [])),
    request_body = FrequencyBody,
    responses(
        (status = 200, description = "`{\"frequency\": string}`", body = Object),
        (status = "default", description = "An error", body = ErrorBody),
    ),
)]
async fn update_connection_frequency(
    State(ctx): State<Context>,
    Env(env): Env,
    Body(body): Body<FrequencyBody>,
) -> ApiResult<Json<Value>> {
    let sync = match body.sync_variant {
        Some(variant) => SyncIdentifier::WithVariant {
            name: body.sync_name,
            variant,
        },
        None => SyncIdentifier::Name(body.sync_name),
    };
    let selection = Selection {
        provider_config_key: body.provider_config_key,
        connection_id: Some(body.connection_id),
        syncs: names(vec![sync])?,
    };
    let frequency =
        syncs::update_frequency(&ctx, env.id, &selection, body.frequency.as_deref()).await?;
    Ok(Json(json!({ "frequency": frequency })))
}
