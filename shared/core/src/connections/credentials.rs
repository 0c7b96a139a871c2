//! Connection credentials, in Nango's public shape (`{"type": "OAUTH2", "access_token": ...}`).
//! Stored encrypted as one JSON document; `Debug` never prints them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{Error, Result};

#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum Credentials {
    #[serde(rename = "OAUTH2")]
    OAuth2(OAuth2Token),
    #[serde(rename = "OAUTH2_CC")]
    OAuth2ClientCredentials {
        token: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expires_at: Option<DateTime<Utc>>,
        client_id: String,
        client_secret: String,
        #[serde(default)]
        raw: Value,
    },
    #[serde(rename = "API_KEY")]
    ApiKey {
        #[serde(rename = "apiKey")]
        api_key: String,
    },
    #[serde(rename = "BASIC")]
    Basic {
        username: String,
        #[serde(default)]
        password: String,
    },
    #[serde(rename = "NONE")]
    None,
}

#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct OAuth2Token {
    pub access_token: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    /// The provider's whole token response.
    #[serde(default)]
    pub raw: Value,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials::{}([REDACTED])", self.type_name())
    }
}

impl std::fmt::Debug for OAuth2Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OAuth2Token([REDACTED])")
    }
}

impl Credentials {
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::OAuth2(_) => "OAUTH2",
            Self::OAuth2ClientCredentials { .. } => "OAUTH2_CC",
            Self::ApiKey { .. } => "API_KEY",
            Self::Basic { .. } => "BASIC",
            Self::None => "NONE",
        }
    }

    pub fn expires_at(&self) -> Option<DateTime<Utc>> {
        match self {
            Self::OAuth2(t) => t.expires_at,
            Self::OAuth2ClientCredentials { expires_at, .. } => *expires_at,
            _ => None,
        }
    }

    /// Parses credentials given by a user (import), naming the field that is wrong.
    pub fn from_input(value: &Value) -> Result<Self> {
        let kind = value
            .get("type")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::invalid("credentials.type", "is required"))?;
        let required = |field: &str| -> Result<()> {
            match value.get(field) {
                Some(Value::String(s)) if !s.is_empty() => Ok(()),
                _ => Err(Error::invalid(
                    format!("credentials.{field}"),
                    format!("is required for {kind} credentials"),
                )),
            }
        };
        match kind {
            "OAUTH2" => required("access_token")?,
            "OAUTH2_CC" => {
                required("token")?;
                required("client_id")?;
                required("client_secret")?;
            }
            "API_KEY" => required("apiKey")?,
            "BASIC" => required("username")?,
            "NONE" => {}
            other => {
                return Err(Error::invalid(
                    "credentials.type",
                    format!(
                        "`{other}` is not supported; use OAUTH2, OAUTH2_CC, API_KEY, BASIC or NONE"
                    ),
                ));
            }
        }
        let mut value = value.clone();
        // As Nango does, an imported token without its raw token response gets the fields it
        // was imported with (`getRawTokenResponse` reads them).
        if matches!(kind, "OAUTH2" | "OAUTH2_CC") && value.get("raw").is_none_or(Value::is_null) {
            value["raw"] = value.clone();
        }
        serde_json::from_value(value).map_err(|e| {
            // serde names the field; the value itself is never echoed.
            Error::invalid("credentials", e.to_string())
        })
    }

    /// The same credentials without the refresh token (what `GET /connections/:id` shows unless
    /// asked for it).
    pub fn without_refresh_token(&self) -> Self {
        match self {
            Self::OAuth2(t) => {
                let mut t = t.clone();
                t.refresh_token = None;
                if let Value::Object(raw) = &mut t.raw {
                    raw.remove("refresh_token");
                }
                Self::OAuth2(t)
            }
            other => other.clone(),
        }
    }

    /// The credentials as the object catalog templates read (`${accessToken}`,
    /// `${credentials.apiKey}`, ...): the stored fields plus Nango's camel-case aliases.
    pub fn as_template_values(&self) -> serde_json::Map<String, Value> {
        let mut values = match serde_json::to_value(self) {
            Ok(Value::Object(m)) => m,
            _ => serde_json::Map::new(),
        };
        let alias = match self {
            Self::OAuth2(t) => Some(("accessToken", t.access_token.clone())),
            Self::OAuth2ClientCredentials { token, .. } => Some(("accessToken", token.clone())),
            _ => None,
        };
        if let Some((name, value)) = alias {
            values.insert(name.to_string(), Value::String(value));
        }
        values
    }

    /// Every secret string these credentials hold, for scrubbing them out of logs and errors.
    pub fn secrets(&self) -> Vec<&str> {
        match self {
            Self::OAuth2(t) => std::iter::once(t.access_token.as_str())
                .chain(t.refresh_token.as_deref())
                .collect(),
            Self::OAuth2ClientCredentials {
                token,
                client_secret,
                ..
            } => vec![token, client_secret],
            Self::ApiKey { api_key } => vec![api_key],
            Self::Basic { password, .. } if !password.is_empty() => vec![password],
            Self::Basic { .. } | Self::None => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_each_type_and_names_missing_fields() {
        let ok = [
            json!({"type": "OAUTH2", "access_token": "a", "refresh_token": "r", "expires_at": "2030-01-01T00:00:00Z"}),
            json!({"type": "OAUTH2_CC", "token": "t", "client_id": "i", "client_secret": "s"}),
            json!({"type": "API_KEY", "apiKey": "k"}),
            json!({"type": "BASIC", "username": "u", "password": "p"}),
            json!({"type": "NONE"}),
        ];
        for v in ok {
            let c = Credentials::from_input(&v).unwrap();
            assert_eq!(c.type_name(), v["type"]);
        }
        let e = Credentials::from_input(&json!({"type": "API_KEY"})).unwrap_err();
        assert!(
            matches!(e, Error::Invalid { ref field, .. } if field == "credentials.apiKey"),
            "{e}"
        );
        let e = Credentials::from_input(&json!({"type": "SAML"})).unwrap_err();
        assert!(matches!(e, Error::Invalid { ref field, .. } if field == "credentials.type"));
        let e = Credentials::from_input(
            &json!({"type": "OAUTH2", "access_token": "a", "expires_at": "soon"}),
        )
        .unwrap_err();
        assert!(!e.to_string().contains("\"a\""), "{e}");
    }

    #[test]
    fn an_imported_token_without_raw_keeps_its_fields_as_raw() {
        let input = json!({"type": "OAUTH2", "access_token": "a", "refresh_token": "r"});
        let Credentials::OAuth2(token) = Credentials::from_input(&input).unwrap() else {
            panic!("OAUTH2 expected");
        };
        assert_eq!(token.raw, input);
        let given = json!({"type": "OAUTH2", "access_token": "a", "raw": {"scope": "x"}});
        let Credentials::OAuth2(token) = Credentials::from_input(&given).unwrap() else {
            panic!("OAUTH2 expected");
        };
        assert_eq!(token.raw, json!({"scope": "x"}));
    }

    #[test]
    fn debug_is_redacted() {
        let c = Credentials::ApiKey {
            api_key: "sk_live_123".into(),
        };
        assert!(!format!("{c:?}").contains("sk_live_123"));
    }

    #[test]
    fn refresh_token_can_be_hidden() {
        let c = Credentials::from_input(
            &json!({"type": "OAUTH2", "access_token": "a", "refresh_token": "r",
            "raw": {"access_token": "a", "refresh_token": "r"}}),
        )
        .unwrap();
        let shown = serde_json::to_value(c.without_refresh_token()).unwrap();
        assert!(shown.get("refresh_token").is_none());
        assert!(shown["raw"].get("refresh_token").is_none());
    }
}
