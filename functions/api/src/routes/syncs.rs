//! Nango's sync API: `POST /sync/trigger`, `POST /sync/pause`, `POST /sync/start`,
//! `GET /sync/status` and `PUT /sync/update-connection-frequency`.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use lasso_services::Context;
use lasso_services::syncs::{self, Selection, SyncIdentifier, SyncMode};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::Env;
use crate::connection_headers::text;
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::extract::{Body, Query};

pub fn router() -> Router<Context> {
    Router::new()
        .route("/sync/trigger", post(trigger))
        .route("/sync/pause", post(pause))
        .route("/sync/start", post(start))
        .route("/sync/status", get(status))
        .route(
            "/sync/update-connection-frequency",
            put(update_connection_frequency),
        )
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

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct TriggerOpts {
    #[serde(default)]
    reset: bool,
    #[serde(default, rename = "emptyCache")]
    empty_cache: bool,
}

#[derive(Deserialize)]
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

#[derive(Deserialize)]
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

async fn pause(
    State(ctx): State<Context>,
    Env(env): Env,
    Body(body): Body<ScheduleBody>,
) -> ApiResult<Json<Value>> {
    syncs::pause(&ctx, env.id, &body.selection()?).await?;
    Ok(Json(json!({"success": true})))
}

async fn start(
    State(ctx): State<Context>,
    Env(env): Env,
    Body(body): Body<ScheduleBody>,
) -> ApiResult<Json<Value>> {
    syncs::start(&ctx, env.id, &body.selection()?).await?;
    Ok(Json(json!({"success": true})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StatusParams {
    /// `*`, or names (`name` or `name::variant`) separated by commas.
    syncs: String,
    provider_config_key: String,
    connection_id: Option<String>,
}

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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FrequencyBody {
    sync_name: String,
    sync_variant: Option<String>,
    provider_config_key: String,
    connection_id: String,
    /// `every 5 minutes`; null goes back to the sync's own frequency.
    frequency: Option<String>,
}

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
