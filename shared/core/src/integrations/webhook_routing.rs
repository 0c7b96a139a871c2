//! An integration's webhook routing (`custom.webhook_routing`): how a provider's webhook finds
//! its connections and its event type, and how its signature is checked. Part of the
//! integration's configuration, so it is checked whenever an integration is created or updated;
//! `lasso_services::incoming_webhooks` applies it.

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::{Error, Result};

/// The key of the routing rules in an integration's `custom` object.
pub const ROUTING_KEY: &str = "webhook_routing";

/// The key, in an integration's `custom` object, of `true` when every incoming webhook must
/// carry a signature Lasso verified (refused otherwise).
pub const REQUIRE_SIGNATURES_KEY: &str = "require_webhook_signatures";

/// Where a value of the webhook is read: exactly one of a header or a body path.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    #[serde(default)]
    pub header: Option<String>,
    #[serde(default)]
    pub body_path: Option<String>,
}

/// A [`Source`] and the key of the connection field its value must equal.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyedSource {
    #[serde(default)]
    pub header: Option<String>,
    #[serde(default)]
    pub body_path: Option<String>,
    pub key: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    #[default]
    Hex,
    Base64,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Signature {
    pub header: String,
    #[serde(default)]
    pub prefix: String,
    #[serde(default)]
    pub encoding: Encoding,
}

/// An integration's `custom.webhook_routing`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Routing {
    #[serde(default)]
    pub connection_id: Option<Source>,
    #[serde(default)]
    pub connection_config: Option<KeyedSource>,
    #[serde(default)]
    pub metadata: Option<KeyedSource>,
    #[serde(default)]
    pub event: Option<Source>,
    #[serde(default)]
    pub signature: Option<Signature>,
    /// `custom.require_webhook_signatures`: refuse webhooks whose signature was not verified.
    #[serde(skip)]
    pub require_signatures: bool,
}

const FIELD: &str = "custom.webhook_routing";

fn check_source(field: &str, header: &Option<String>, body_path: &Option<String>) -> Result<()> {
    let nonempty = |v: &Option<String>| v.as_deref().is_some_and(|s| !s.trim().is_empty());
    match (nonempty(header), nonempty(body_path)) {
        (true, false) | (false, true) => Ok(()),
        _ => Err(Error::invalid(
            format!("{FIELD}.{field}"),
            "give exactly one of `header` or `body_path`",
        )),
    }
}

impl Routing {
    /// The rules in an integration's `custom` object (default: none); a 400 naming the field
    /// when they are malformed.
    pub fn from_custom(custom: &Map<String, Value>) -> Result<Self> {
        let require_signatures = match custom.get(REQUIRE_SIGNATURES_KEY) {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => {
                return Err(Error::invalid(
                    format!("custom.{REQUIRE_SIGNATURES_KEY}"),
                    "expected true or false",
                ));
            }
        };
        let Some(value) = custom.get(ROUTING_KEY) else {
            return Ok(Self {
                require_signatures,
                ..Self::default()
            });
        };
        let mut routing: Routing = serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            let field = if path == "." {
                FIELD.to_string()
            } else {
                format!("{FIELD}.{path}")
            };
            Error::invalid(field, e.into_inner().to_string())
        })?;
        if let Some(s) = &routing.connection_id {
            check_source("connection_id", &s.header, &s.body_path)?;
        }
        for (name, rule) in [
            ("connection_config", &routing.connection_config),
            ("metadata", &routing.metadata),
        ] {
            if let Some(s) = rule {
                check_source(name, &s.header, &s.body_path)?;
                if s.key.trim().is_empty() {
                    return Err(Error::invalid(
                        format!("{FIELD}.{name}.key"),
                        "must name the field to compare with",
                    ));
                }
            }
        }
        let connection_rules = [
            routing.connection_id.is_some(),
            routing.connection_config.is_some(),
            routing.metadata.is_some(),
        ];
        if connection_rules.iter().filter(|r| **r).count() > 1 {
            return Err(Error::invalid(
                FIELD,
                "give at most one of `connection_id`, `connection_config` or `metadata`",
            ));
        }
        if let Some(s) = &routing.event {
            check_source("event", &s.header, &s.body_path)?;
        }
        if let Some(s) = &routing.signature
            && s.header.trim().is_empty()
        {
            return Err(Error::invalid(
                format!("{FIELD}.signature.header"),
                "must name the header that carries the signature",
            ));
        }
        routing.require_signatures = require_signatures;
        Ok(routing)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn routing(value: Value) -> Result<Routing> {
        Routing::from_custom(&Map::from_iter([(ROUTING_KEY.to_string(), value)]))
    }

    #[test]
    fn rules_are_checked_and_name_the_field() {
        assert_eq!(
            Routing::from_custom(&Map::new()).unwrap(),
            Routing::default()
        );
        assert!(
            routing(json!({"connection_config": {"body_path": "installation.id", "key": "installation_id"},
                           "event": {"header": "X-GitHub-Event"}}))
            .is_ok()
        );
        let bad = [
            (json!({"event": {}}), "custom.webhook_routing.event"),
            (
                json!({"event": {"header": "a", "body_path": "b"}}),
                "custom.webhook_routing.event",
            ),
            (
                json!({"metadata": {"header": "X-Account"}}),
                "custom.webhook_routing.metadata",
            ),
            (
                json!({"metadata": {"header": "X", "key": ""}}),
                "custom.webhook_routing.metadata.key",
            ),
            (
                json!({"connection_id": {"header": "X"}, "metadata": {"header": "Y", "key": "k"}}),
                "custom.webhook_routing",
            ),
            (
                json!({"evnt": {"header": "X"}}),
                "custom.webhook_routing.evnt",
            ),
            (
                json!({"signature": {"header": "X", "encoding": "rot13"}}),
                "custom.webhook_routing.signature.encoding",
            ),
        ];
        for (value, field) in bad {
            match routing(value.clone()) {
                Err(Error::Invalid { field: f, .. }) => assert_eq!(f, field, "{value}"),
                other => panic!("{value}: {other:?}"),
            }
        }
    }
}
