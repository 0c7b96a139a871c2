//! The fields of an integration's connect form, from its provider's catalog entry: the
//! `connection_config` fields a person fills in, then the credentials of the auth mode, each
//! with its title, description, example, prefix and suffix. Values are checked here, in words,
//! before anything is sent (the auth flows check connection config values again).

use std::collections::BTreeMap;

use lasso_services::auth_flows::{ValueProblem, value_problem};
use lasso_services::providers::{AuthMode, FieldSchema, Provider};
use serde_json::{Map, Value};

/// How a field is typed in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    Text,
    /// Masked, never echoed back into the page.
    Secret,
    Select(Vec<String>),
}

#[derive(Debug, Clone)]
pub struct Field {
    /// The form name, which is also the API's: `params[subdomain]`, `apiKey`, `username`, ...
    pub name: String,
    pub label: String,
    pub description: Option<String>,
    pub example: Option<String>,
    /// Shown around the input (`https://`, `.zendesk.com`); never part of the value.
    pub prefix: Option<String>,
    pub suffix: Option<String>,
    pub input: Input,
    pub required: bool,
    pub default: Option<String>,
    /// The catalog's schema, whose `pattern` and `format` the value must respect.
    pub schema: Option<FieldSchema>,
}

impl Field {
    /// The element id of the field's input.
    pub fn id(&self) -> String {
        let slug: String = self
            .name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        format!("field-{slug}")
    }

    /// A connection config value (`params[x]`), as opposed to a credential.
    pub fn config_name(&self) -> Option<&str> {
        self.name.strip_prefix("params[")?.strip_suffix(']')
    }

    fn from_schema(name: String, fallback_label: &str, schema: Option<&FieldSchema>) -> Self {
        let text = |key: &str| {
            schema
                .and_then(|s| s.extra.get(key))
                .and_then(Value::as_str)
                .filter(|v| !v.is_empty())
                .map(str::to_string)
        };
        let input = match schema {
            Some(s) if !s.allowed.is_empty() => Input::Select(s.allowed.clone()),
            Some(s) if s.secret => Input::Secret,
            _ => Input::Text,
        };
        Field {
            name,
            label: schema
                .and_then(|s| s.title.clone())
                .filter(|t| !t.trim().is_empty())
                .unwrap_or_else(|| fallback_label.to_string()),
            description: schema.and_then(|s| s.description.clone()),
            example: schema.and_then(|s| s.example.clone()),
            prefix: text("prefix"),
            suffix: text("suffix"),
            input,
            required: schema.is_none_or(|s| !s.optional && s.default_value.is_none()),
            default: schema.and_then(|s| s.default_value.clone()),
            schema: schema.cloned(),
        }
    }
}

/// What the credentials of an auth mode are called: form name and label. `None` for the modes
/// the Connect UI cannot create connections for.
fn credential_fields(mode: &AuthMode) -> Option<&'static [(&'static str, &'static str, bool)]> {
    // (name, label, secret)
    Some(match mode {
        AuthMode::OAuth2 => &[],
        AuthMode::ApiKey => &[("apiKey", "API key", true)],
        AuthMode::Basic => &[
            ("username", "Username", false),
            ("password", "Password", true),
        ],
        AuthMode::OAuth2Cc => &[
            ("client_id", "Client ID", false),
            ("client_secret", "Client secret", true),
        ],
        _ => return None,
    })
}

/// Whether the Connect UI can connect integrations of this auth mode.
pub fn supported(mode: &AuthMode) -> bool {
    credential_fields(mode).is_some()
}

/// The form's fields, in order: the connection config a person supplies (not the automated or
/// hidden ones, nor those the connect session already sets in `preset`), by the catalog's
/// `order`, then the auth mode's credentials.
pub fn for_provider(provider: &Provider, preset: &Map<String, Value>) -> Vec<Field> {
    let mut config: Vec<(&String, &FieldSchema)> = provider
        .connection_config
        .iter()
        .filter(|(name, f)| !f.automated && !f.hidden && !preset.contains_key(*name))
        .collect();
    config.sort_by(|(a_name, a), (b_name, b)| {
        let order = |f: &FieldSchema| f.order.as_ref().and_then(|n| n.as_f64());
        order(a)
            .partial_cmp(&order(b))
            .unwrap_or(std::cmp::Ordering::Equal)
            .then_with(|| a_name.cmp(b_name))
    });
    let mut fields: Vec<Field> = config
        .into_iter()
        .map(|(name, schema)| Field::from_schema(format!("params[{name}]"), name, Some(schema)))
        .collect();
    for (name, label, secret) in credential_fields(&provider.auth_mode).unwrap_or_default() {
        let mut field =
            Field::from_schema(name.to_string(), label, provider.credentials.get(*name));
        if *secret {
            field.input = Input::Secret;
        }
        fields.push(field);
    }
    fields
}

/// The submitted values of `fields`, trimmed; names the form does not have are dropped.
pub fn values(fields: &[Field], form: Vec<(String, String)>) -> BTreeMap<String, String> {
    form.into_iter()
        .filter(|(name, _)| fields.iter().any(|f| &f.name == name))
        .map(|(name, value)| (name, value.trim().to_string()))
        .collect()
}

/// What is wrong with each field's value, in words, by field name.
pub fn problems(fields: &[Field], values: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for field in fields {
        let value = values.get(&field.name).map_or("", String::as_str);
        if let Some(problem) = problem(field, value) {
            out.insert(field.name.clone(), problem);
        }
    }
    out
}

fn problem(field: &Field, value: &str) -> Option<String> {
    if value.is_empty() {
        return (field.required && field.default.is_none())
            .then(|| format!("{} is required.", field.label));
    }
    if let Input::Select(options) = &field.input
        && !options.iter().any(|o| o == value)
    {
        return Some(format!("Choose one of: {}.", options.join(", ")));
    }
    let example = field
        .example
        .as_deref()
        .map(|e| format!(" It should look like “{e}”."))
        .unwrap_or_default();
    match value_problem(field.schema.as_ref()?, value)? {
        ValueProblem::Pattern(_) => Some(format!(
            "This doesn't look like a valid {}.{example}",
            field.label
        )),
        ValueProblem::Format(format) => {
            let kind = match format.as_str() {
                "hostname" => "host name (like example.com, without https://)",
                "uri" => "web address (like https://example.com)",
                "uuid" => "UUID (like 123e4567-e89b-12d3-a456-426614174000)",
                "email" => "email address",
                other => other,
            };
            Some(format!("Enter a valid {kind}.{example}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider(entry: Value) -> Provider {
        serde_json::from_value(entry).unwrap()
    }

    #[test]
    fn fields_come_from_the_catalog_entry() {
        let p = provider(serde_json::json!({
            "display_name": "Keys",
            "auth_mode": "API_KEY",
            "credentials": {"apiKey": {
                "type": "string", "title": "Secret token", "description": "Under Settings, API.",
                "pattern": "^sk-", "example": "sk-123"
            }},
            "connection_config": {
                "workspace": {"type": "string", "title": "Workspace", "prefix": "https://",
                    "suffix": ".keys.test", "order": 2},
                "region": {"type": "string", "enum": ["eu", "us"], "order": 1},
                "instance_url": {"type": "string", "automated": true},
                "preset": {"type": "string"}
            }
        }));
        let preset = serde_json::json!({"preset": "x"});
        let fields = for_provider(&p, preset.as_object().unwrap());
        let names: Vec<&str> = fields.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["params[region]", "params[workspace]", "apiKey"]);
        assert_eq!(
            fields[0].input,
            Input::Select(vec!["eu".into(), "us".into()])
        );
        assert_eq!(fields[0].label, "region", "no title: the field's name");
        assert_eq!(fields[1].prefix.as_deref(), Some("https://"));
        assert_eq!(fields[1].suffix.as_deref(), Some(".keys.test"));
        assert_eq!(fields[1].config_name(), Some("workspace"));
        assert_eq!(fields[2].label, "Secret token");
        assert_eq!(fields[2].input, Input::Secret);
        assert_eq!(fields[2].id(), "field-apiKey");
        assert_eq!(fields[1].id(), "field-params-workspace-");
    }

    #[test]
    fn problems_are_worded_for_people() {
        let p = provider(serde_json::json!({
            "display_name": "Keys",
            "auth_mode": "API_KEY",
            "credentials": {"apiKey": {
                "type": "string", "title": "API key", "pattern": "^sk-[a-z0-9-]+$",
                "example": "sk-live-123"
            }},
            "connection_config": {
                "host": {"type": "string", "title": "Host", "format": "hostname"},
                "region": {"type": "string", "enum": ["eu", "us"], "optional": true}
            }
        }));
        let fields = for_provider(&p, &Map::new());
        let form = vec![
            ("apiKey".to_string(), " nope ".to_string()),
            ("params[host]".to_string(), "https://x".to_string()),
            ("params[region]".to_string(), "mars".to_string()),
            ("params[other]".to_string(), "dropped".to_string()),
        ];
        let values = values(&fields, form);
        assert!(!values.contains_key("params[other]"));
        let problems = problems(&fields, &values);
        assert_eq!(
            problems["apiKey"],
            "This doesn't look like a valid API key. It should look like “sk-live-123”."
        );
        assert!(problems["params[host]"].starts_with("Enter a valid host name"));
        assert_eq!(problems["params[region]"], "Choose one of: eu, us.");
        assert!(
            problems.values().all(|p| !p.contains('^')),
            "no regular expressions in words for people: {problems:?}"
        );

        let empty = problems_of(&fields, &[]);
        assert_eq!(empty["apiKey"], "API key is required.");
        assert_eq!(empty["params[host]"], "Host is required.");
        assert!(!empty.contains_key("params[region]"), "optional");
    }

    fn problems_of(fields: &[Field], form: &[(&str, &str)]) -> BTreeMap<String, String> {
        let form = form
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        problems(fields, &values(fields, form))
    }

    #[test]
    fn modes_without_a_form_are_not_supported() {
        assert!(supported(&AuthMode::OAuth2));
        assert!(supported(&AuthMode::Basic));
        assert!(!supported(&AuthMode::Tba));
    }
}
