//! OAuth 2 token requests as Nango's provider catalog describes them: token URL, extra params,
//! client authentication in the body or a Basic header, form or JSON bodies, non-standard token
//! response paths and units. Shared by the authorization-code and client-credentials flows and
//! by token refresh.
//!
//! Hand-written on reqwest rather than the `oauth2` crate: the catalog needs JSON bodies,
//! alternate response paths and per-provider scope separators, which that crate cannot express.

use base64::Engine;
use chrono::{DateTime, Duration, Utc};
use serde_json::{Map, Value};

use crate::providers::{BodyFormat, ExpiresInUnit, Params, Provider, TokenRequestAuthMethod};
use crate::{Error, ErrorCode, Result};

/// The OAuth app's client credentials.
pub struct Client<'a> {
    pub id: &'a str,
    pub secret: &'a str,
}

pub enum Grant<'a> {
    AuthorizationCode {
        code: &'a str,
        redirect_uri: &'a str,
        code_verifier: Option<&'a str>,
    },
    RefreshToken {
        refresh_token: &'a str,
    },
    ClientCredentials {
        scopes: Option<&'a str>,
    },
}

/// A successful token response.
#[derive(Clone, PartialEq)]
pub struct Token {
    pub access_token: String,
    pub refresh_token: Option<String>,
    pub expires_at: Option<DateTime<Utc>>,
    /// The provider's whole response.
    pub raw: Value,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

const TOKEN_REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Largest token response read: real ones are a few KiB; a provider (or whoever a bad URL
/// reached) must not make Lasso buffer without end.
pub const MAX_TOKEN_RESPONSE: usize = 1024 * 1024;

/// Longest piece of a provider's error text we repeat to the user.
const MAX_ERROR_TEXT: usize = 300;

fn param_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Requests a token from `token_url` for `grant`. `http` must follow no redirects (the
/// context's client does not): a redirect would carry the client secret to another host.
pub async fn request_token(
    http: &crate::outbound::Client,
    provider: &Provider,
    token_url: &str,
    client: &Client<'_>,
    grant: Grant<'_>,
) -> Result<Token> {
    let mut fields: Vec<(String, String)> = Vec::new();
    let extra: &Params = match &grant {
        Grant::AuthorizationCode {
            code,
            redirect_uri,
            code_verifier,
        } => {
            fields.push(("grant_type".into(), "authorization_code".into()));
            fields.push(("code".into(), code.to_string()));
            fields.push(("redirect_uri".into(), redirect_uri.to_string()));
            if let Some(v) = code_verifier {
                fields.push(("code_verifier".into(), v.to_string()));
            }
            &provider.token_params
        }
        Grant::RefreshToken { refresh_token } => {
            fields.push(("grant_type".into(), "refresh_token".into()));
            fields.push(("refresh_token".into(), refresh_token.to_string()));
            &provider.refresh_params
        }
        Grant::ClientCredentials { scopes } => {
            fields.push(("grant_type".into(), "client_credentials".into()));
            if let Some(s) = scopes.filter(|s| !s.is_empty()) {
                fields.push(("scope".into(), s.to_string()));
            }
            &provider.token_params
        }
    };
    // The catalog's params override the defaults above (e.g. a provider's own grant_type).
    for (k, v) in extra {
        fields.retain(|(name, _)| name != k);
        fields.push((k.clone(), param_text(v)));
    }
    let basic = provider.token_request_auth_method == Some(TokenRequestAuthMethod::Basic);
    if !basic {
        fields.push(("client_id".into(), client.id.to_string()));
        fields.push(("client_secret".into(), client.secret.to_string()));
    }

    let mut request = http
        .post(token_url)
        .map_err(|r| Error::outbound_refused(&r))?
        .timeout(TOKEN_REQUEST_TIMEOUT)
        .header(reqwest::header::ACCEPT, "application/json");
    if basic {
        let pair = format!("{}:{}", client.id, client.secret);
        request = request.header(
            reqwest::header::AUTHORIZATION,
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(pair)
            ),
        );
    }
    request = match provider.body_format {
        Some(BodyFormat::Json) => {
            let body: Map<String, Value> = fields
                .into_iter()
                .map(|(k, v)| (k, Value::String(v)))
                .collect();
            request.json(&body)
        }
        _ => request.form(&fields),
    };

    let response = request
        .send()
        .await
        .map_err(|e| match crate::outbound::refusal(&e) {
            Some(refused) => Error::outbound_refused(refused),
            None => Error::Provider {
                code: ErrorCode::ProviderUnreachable,
                message: format!(
                    "could not reach the token endpoint of {}: {}",
                    provider.display_name,
                    e.without_url()
                ),
            },
        })?;
    let status = response.status();
    let text = read_bounded(provider, response).await?;
    let raw = parse_body(&text);
    if !status.is_success() || raw.get("error").is_some_and(|e| !e.is_null()) {
        return Err(Error::Provider {
            code: ErrorCode::ProviderTokenError,
            message: format!(
                "the token endpoint of {} answered {}: {}",
                provider.display_name,
                status.as_u16(),
                error_text(&raw, &text)
            ),
        });
    }
    parse_token(provider, raw)
}

/// The response body, refused beyond [`MAX_TOKEN_RESPONSE`] bytes.
async fn read_bounded(provider: &Provider, mut response: reqwest::Response) -> Result<String> {
    let too_large = || Error::Provider {
        code: ErrorCode::ProviderTokenError,
        message: format!(
            "the token response of {} is too large (over {} KiB)",
            provider.display_name,
            MAX_TOKEN_RESPONSE / 1024
        ),
    };
    if response
        .content_length()
        .is_some_and(|n| n > MAX_TOKEN_RESPONSE as u64)
    {
        return Err(too_large());
    }
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > MAX_TOKEN_RESPONSE {
                    return Err(too_large());
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => break,
            Err(e) => {
                return Err(Error::Provider {
                    code: ErrorCode::ProviderUnreachable,
                    message: format!(
                        "reading the token response of {}: {}",
                        provider.display_name,
                        e.without_url()
                    ),
                });
            }
        }
    }
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// Token endpoints answer JSON, or form-encoded text (GitHub without an Accept header).
fn parse_body(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| {
        Value::Object(
            url::form_urlencoded::parse(text.as_bytes())
                .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
                .collect(),
        )
    })
}

fn error_text(raw: &Value, text: &str) -> String {
    let described = [raw.get("error"), raw.get("error_description")]
        .into_iter()
        .flatten()
        .map(param_text)
        .collect::<Vec<_>>()
        .join(": ");
    let out = if described.is_empty() {
        text.to_string()
    } else {
        described
    };
    out.chars().take(MAX_ERROR_TEXT).collect()
}

fn lookup<'v>(value: &'v Value, dotted: &str) -> Option<&'v Value> {
    dotted.split('.').try_fold(value, |v, key| v.get(key))
}

fn parse_token(provider: &Provider, raw: Value) -> Result<Token> {
    let path = provider
        .alternate_access_token_response_path
        .as_deref()
        .unwrap_or("access_token");
    let access_token = lookup(&raw, path)
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| Error::Provider {
            code: ErrorCode::ProviderTokenError,
            message: format!(
                "the token response of {} has no `{path}`",
                provider.display_name
            ),
        })?
        .to_string();
    let refresh_token = raw
        .get("refresh_token")
        .and_then(Value::as_str)
        .map(str::to_string);
    let expires_in = raw.get("expires_in").and_then(|v| match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    });
    let expires_at = match expires_in {
        Some(n) if n > 0.0 => {
            let millis = match provider.expires_in_unit {
                Some(ExpiresInUnit::Milliseconds) => n,
                None => n * 1000.0,
            };
            Some(Utc::now() + Duration::milliseconds(millis as i64))
        }
        _ => raw
            .get("expires_at")
            .and_then(Value::as_str)
            .and_then(|s| s.parse::<DateTime<Utc>>().ok()),
    };
    Ok(Token {
        access_token,
        refresh_token,
        expires_at,
        raw,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn provider(extra: Value) -> Provider {
        let mut base = json!({"display_name": "Test", "auth_mode": "OAUTH2", "docs": "x"});
        base.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        serde_json::from_value(base).unwrap()
    }

    #[test]
    fn parses_standard_and_alternate_token_responses() {
        let t = parse_token(
            &provider(json!({})),
            json!({"access_token": "a", "refresh_token": "r", "expires_in": 3600}),
        )
        .unwrap();
        assert_eq!(t.access_token, "a");
        assert_eq!(t.refresh_token.as_deref(), Some("r"));
        let left = t.expires_at.unwrap() - Utc::now();
        assert!(left > Duration::seconds(3590) && left <= Duration::seconds(3600));

        let t = parse_token(
            &provider(
                json!({"alternate_access_token_response_path": "authed_user.access_token",
                             "expires_in_unit": "milliseconds"}),
            ),
            json!({"authed_user": {"access_token": "u"}, "expires_in": "60000"}),
        )
        .unwrap();
        assert_eq!(t.access_token, "u");
        assert!(t.expires_at.unwrap() - Utc::now() <= Duration::seconds(60));

        let e = parse_token(&provider(json!({})), json!({"token_type": "bearer"})).unwrap_err();
        assert!(e.to_string().contains("access_token"));
    }

    #[test]
    fn form_encoded_responses_parse() {
        let v = parse_body("access_token=abc&scope=repo&token_type=bearer");
        assert_eq!(v["access_token"], "abc");
    }

    #[test]
    fn provider_errors_are_short_and_described() {
        let raw = json!({"error": "invalid_grant", "error_description": "Bad code"});
        assert_eq!(error_text(&raw, ""), "invalid_grant: Bad code");
        assert_eq!(
            error_text(&json!({}), &"x".repeat(1000)).len(),
            MAX_ERROR_TEXT
        );
    }
}
