//! Deployed functions: `POST /scripts/deploy` (Lasso's own, used by `lasso deploy`),
//! `GET /integrations/:uniqueKey/functions` and `GET /integrations/:uniqueKey/functions/:name`
//! (Nango's shape).

use axum::Json;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use lasso_services::scripts::store::{self, DeployedFunction};
use lasso_services::scripts::{self, DeployOutcome, DeployRequest, FunctionType, Trigger};
use lasso_services::{Context, Error, integrations};
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::IntoParams;
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouterExt};
use utoipa_axum::routes;

use crate::auth::Env;
use crate::error::{ApiResult, ErrorBody};
use crate::extract::Query;

/// A deploy carries every bundle inline. Lambda accepts request payloads up to 6 MB, so a
/// larger body could not reach the function there anyway.
pub const MAX_DEPLOY_BODY_BYTES: usize = 6 * 1024 * 1024;

pub fn router() -> OpenApiRouter<Context> {
    OpenApiRouter::new()
        .routes(routes!(deploy).layer(DefaultBodyLimit::max(MAX_DEPLOY_BODY_BYTES)))
        .routes(routes!(list))
        .routes(routes!(get_one))
}

/// Deploys compiled functions (what `lasso deploy` sends).
#[utoipa::path(
    post,
    path = "/scripts/deploy",
    tag = "functions",
    security(("secret_key" = [])),
    request_body(content = Object, content_type = "application/json", description = "`DeployRequest`: the integration, its functions and their bundles"),
    responses(
        (status = 200, description = "What was deployed and removed (`DeployOutcome`)", body = Object),
        (status = "default", description = "An error", body = ErrorBody),
    ),
)]
async fn deploy(
    State(ctx): State<Context>,
    Env(env): Env,
    body: crate::extract::RawBody,
) -> ApiResult<Json<DeployOutcome>> {
    let request: DeployRequest = parse_json(&body.0)?;
    let integration = request.integration.clone();
    let result = scripts::deploy(&ctx.db, ctx.scripts.as_ref(), env.id, request).await;
    let log = scripts::deploy::operation_log(env.id, integration.as_deref(), result.as_ref());
    ctx.logs.submit(log).await;
    Ok(Json(result?))
}

/// A JSON body whose errors name the offending field path.
pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, Error> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        Error::invalid(
            if path == "." { "body".into() } else { path },
            e.into_inner().to_string(),
        )
    })
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct ListParams {
    #[serde(rename = "type")]
    function_type: Option<String>,
    search: Option<String>,
    page: Option<usize>,
    limit: Option<usize>,
}

fn parse_type(value: Option<&str>) -> Result<Option<FunctionType>, Error> {
    value
        .map(|t| {
            FunctionType::parse(t).ok_or_else(|| {
                Error::invalid("type", format!("`{t}` is not sync, action or on-event"))
            })
        })
        .transpose()
}

/// The functions deployed for an integration, in Nango's shape.
#[utoipa::path(
    get,
    path = "/integrations/{unique_key}/functions",
    tag = "functions",
    security(("secret_key" = [])),
    params(("unique_key" = String, Path, description = "The integration's unique key"), ListParams),
    responses(
        (status = 200, description = "`{\"data\": [function], \"pagination\": {total, page, limit}}`", body = Object),
        (status = "default", description = "An error", body = ErrorBody),
    ),
)]
async fn list(
    State(ctx): State<Context>,
    Env(env): Env,
    Path(unique_key): Path<String>,
    Query(params): Query<ListParams>,
) -> ApiResult<Json<Value>> {
    let function_type = parse_type(params.function_type.as_deref())?;
    let page = params.page.unwrap_or(0);
    let limit = params.limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return Err(Error::invalid("limit", "use 1 to 100").into());
    }
    let integration = integrations::get(&ctx.db, env.id, &unique_key).await?;
    let search = params.search.map(|s| s.trim().to_lowercase());
    let matching: Vec<DeployedFunction> = store::list_active(&ctx.db, integration.id)
        .await?
        .into_iter()
        .filter(|f| function_type.is_none_or(|t| f.function_type == t))
        .filter(|f| {
            search
                .as_deref()
                .is_none_or(|s| f.name.to_lowercase().contains(s))
        })
        .collect();
    let data: Vec<Value> = matching
        .iter()
        .skip(page.saturating_mul(limit))
        .take(limit)
        .map(function_json)
        .collect();
    Ok(Json(json!({
        "data": data,
        "pagination": {"total": matching.len(), "page": page, "limit": limit},
    })))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct GetParams {
    #[serde(rename = "type")]
    function_type: Option<String>,
}

/// One deployed function.
#[utoipa::path(
    get,
    path = "/integrations/{unique_key}/functions/{name}",
    tag = "functions",
    security(("secret_key" = [])),
    params(("unique_key" = String, Path, description = "The integration's unique key"), ("name" = String, Path, description = "The function's name"), GetParams),
    responses(
        (status = 200, description = "`{\"data\": function}`", body = Object),
        (status = "default", description = "An error", body = ErrorBody),
    ),
)]
async fn get_one(
    State(ctx): State<Context>,
    Env(env): Env,
    Path((unique_key, name)): Path<(String, String)>,
    Query(params): Query<GetParams>,
) -> ApiResult<Json<Value>> {
    let function_type = parse_type(params.function_type.as_deref())?;
    let integration = integrations::get(&ctx.db, env.id, &unique_key).await?;
    let found: Vec<DeployedFunction> = store::list_active(&ctx.db, integration.id)
        .await?
        .into_iter()
        .filter(|f| f.name == name && function_type.is_none_or(|t| f.function_type == t))
        .collect();
    match found.as_slice() {
        [one] => Ok(Json(json!({ "data": function_json(one) }))),
        [] => {
            Err(Error::not_found(format!("function `{name}` of integration `{unique_key}`")).into())
        }
        _ => Err(Error::invalid(
            "type",
            format!("several functions are named `{name}`; pass `type`"),
        )
        .into()),
    }
}

/// Nango's `ListedNangoFunction`, plus Lasso's `version`.
fn function_json(f: &DeployedFunction) -> Value {
    let c = &f.config;
    let mut out = json!({
        "id": f.id,
        "name": f.name,
        "type": f.function_type.as_str(),
        "description": c.description,
        "scopes": c.scopes,
        "version": c.version,
        "enabled": true,
        "last_deployed": f.deployed_at,
        "source": "repo",
        // Lasso's: which CLI deployed this version (`lasso` or `nango`).
        "deployed_with": f.deployed_with.as_str(),
    });
    match &c.trigger {
        Trigger::Sync(sync) => {
            out["input"] = json!(c.input);
            out["returns"] = json!(c.output);
            out["json_schema"] = models_json_schema(c);
            out["runs"] = json!(sync.runs);
            out["auto_start"] = json!(sync.auto_start);
            out["track_deletes"] = json!(sync.track_deletes);
        }
        Trigger::Action => {
            out["input"] = json!(c.input);
            out["returns"] = json!(c.output);
            out["json_schema"] = models_json_schema(c);
        }
        Trigger::OnEvent { event } => out["event"] = json!(event),
    }
    out
}

/// Nango's `models_json_schema`: `{"definitions": {Model: schema}}` for the models written with
/// zod (converted at compile time), `null` when there are none.
fn models_json_schema(c: &lasso_services::scripts::FunctionConfig) -> Value {
    let definitions: serde_json::Map<String, Value> = c
        .models
        .iter()
        .filter_map(|m| Some((m.name.clone(), m.json_schema.clone()?)))
        .collect();
    if definitions.is_empty() {
        Value::Null
    } else {
        json!({ "definitions": definitions })
    }
}
