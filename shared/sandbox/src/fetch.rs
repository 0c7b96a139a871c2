//! `nango.uncontrolledFetch`: a script's request to any URL, sent with a client built on the
//! outbound policy (`lasso_core::outbound`), carrying only the script's own headers. The
//! runner and `lasso dryrun` both send it here; the SDK turns the answer into a fetch
//! `Response`.

use base64::Engine;
use lasso_core::outbound::{self, Client};
use serde_json::{Value as Json, json};

use crate::HostError;
use crate::budget::RunBudget;

/// What a fetch gave: the answer for the SDK and a line for the run's log.
pub struct Fetched {
    /// `{status, statusText, url, redirected, headers: [[name, value]], body}` (body in
    /// base64), or `{refused}` when the outbound policy refuses the destination.
    pub answer: Json,
    /// `GET https://host/path -> 200`, without the query string (it may carry a key); `None`
    /// when nothing was sent.
    pub log: Option<(u16, String)>,
}

fn failed(e: impl std::fmt::Display) -> HostError {
    HostError::new(format!("uncontrolledFetch: {e}"))
}

fn refused(reason: impl std::fmt::Display) -> Fetched {
    Fetched {
        answer: json!({ "refused": reason.to_string() }),
        log: None,
    }
}

/// Sends the SDK's `{url, method, headers, body}` (body in base64) and reads at most
/// `max_bytes` of the answer.
/// The answer's body is read against `budget`: no larger than one answer may be, and held
/// against the run's memory while it is read.
pub async fn send(client: &Client, args: &Json, budget: &RunBudget) -> Result<Fetched, HostError> {
    let raw = args["url"]
        .as_str()
        .filter(|u| !u.is_empty())
        .ok_or_else(|| failed("`url` is required"))?;
    let url = url::Url::parse(raw).map_err(|e| failed(format!("`url` {e}")))?;
    let method = args["method"].as_str().unwrap_or("GET");
    let method = reqwest::Method::from_bytes(method.as_bytes())
        .map_err(|_| failed(format!("`{method}` is not an HTTP method")))?;
    let mut request = match client.request(method.clone(), url.clone()) {
        Ok(request) => request,
        Err(e) => return Ok(refused(e)),
    };
    if let Some(Json::Object(headers)) = args.get("headers") {
        for (name, value) in headers {
            request = request.header(name.as_str(), value.as_str().unwrap_or_default());
        }
    }
    if let Some(body) = args["body"].as_str() {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(body)
            .map_err(|e| failed(format!("`body`: {e}")))?;
        request = request.body(bytes);
    }
    let mut response = match request.send().await {
        Ok(response) => response,
        Err(e) => {
            if let Some(why) = outbound::refusal(&e) {
                return Ok(refused(why));
            }
            return Err(failed(e.without_url()));
        }
    };
    let status = response.status();
    let headers: Vec<Json> = response
        .headers()
        .iter()
        .filter_map(|(k, v)| Some(json!([k.as_str(), v.to_str().ok()?])))
        .collect();
    let final_url = response.url().clone();
    const WHAT: &str = "uncontrolledFetch: the answer";
    let mut held = budget.reserve(WHAT, 0)?;
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| failed(format!("reading the answer failed: {}", e.without_url())))?
    {
        let needed = body.len() + chunk.len();
        budget.check_response(WHAT, needed)?;
        let more = needed.saturating_sub(held.bytes());
        if more > 0 {
            budget.grow(&mut held, WHAT, more)?;
        }
        body.extend_from_slice(&chunk);
    }
    let shown = format!(
        "{method} {}://{}{} -> {}",
        url.scheme(),
        url.host_str().unwrap_or_default(),
        url.path(),
        status.as_u16()
    );
    Ok(Fetched {
        answer: json!({
            "status": status.as_u16(),
            "statusText": status.canonical_reason().unwrap_or_default(),
            "url": final_url.as_str(),
            "redirected": final_url != url,
            "headers": headers,
            "body": base64::engine::general_purpose::STANDARD.encode(&body),
        }),
        log: Some((status.as_u16(), shown)),
    })
}
