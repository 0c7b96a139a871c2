//! `${...}` templates in catalog strings (base URLs, headers, token URLs).

use base64::Engine;
use serde_json::{Map, Value};

use crate::{Error, Result};

/// Fills in a catalog template:
/// - `${connectionConfig.key}`: the connection config value `key`;
/// - `${credentials.key}`: the credential `key` (`credentials.raw.id_token` walks into objects);
/// - `${name}` (Nango's `${apiKey}`, `${accessToken}`, ...): the credential `name`;
/// - `${base64(...)}`: the base64 of the inner template, e.g.
///   `Basic ${base64(${credentials.username}:${credentials.password})}`;
/// - `a || b`: the first alternative whose values are all present, as in Nango's
///   `https://${connectionConfig.hostname} || https://login.salesforce.com`.
///
/// Strings, numbers and booleans are inserted as text. A missing value is an
/// [`Error::Invalid`] naming it (`connectionConfig.subdomain`); other expressions Nango's catalog
/// uses (signatures, dates) are rejected the same way. Errors never contain credential values.
pub fn interpolate(
    template: &str,
    connection_config: &Map<String, Value>,
    credentials: &Map<String, Value>,
) -> Result<String> {
    let values = Values {
        template,
        connection_config,
        credentials,
    };
    let mut first_error = None;
    for alternative in alternatives(template) {
        match values.expand(alternative.trim()) {
            Ok(text) => return Ok(text),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    Err(first_error.expect("a template has at least one alternative"))
}

struct Values<'a> {
    /// The whole template, for error messages.
    template: &'a str,
    connection_config: &'a Map<String, Value>,
    credentials: &'a Map<String, Value>,
}

impl Values<'_> {
    fn expand(&self, text: &str) -> Result<String> {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let end = closing_brace(after).ok_or_else(|| {
                Error::invalid(
                    "template",
                    format!("unterminated `${{` in `{}`", self.template),
                )
            })?;
            out.push_str(&self.evaluate(after[..end].trim())?);
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }

    fn evaluate(&self, expr: &str) -> Result<String> {
        if let Some(inner) = expr
            .strip_prefix("base64(")
            .and_then(|e| e.strip_suffix(')'))
        {
            return Ok(base64::engine::general_purpose::STANDARD.encode(self.expand(inner)?));
        }
        let (field, value) = if let Some(key) = expr.strip_prefix("connectionConfig.") {
            (expr, lookup(self.connection_config, key))
        } else if let Some(key) = expr.strip_prefix("credentials.") {
            (expr, lookup(self.credentials, key))
        } else if !expr.is_empty() && expr.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            (expr, self.credentials.get(expr))
        } else {
            return Err(Error::invalid(
                "template",
                format!(
                    "unsupported expression `${{{expr}}}` in `{}`",
                    self.template
                ),
            ));
        };
        match value {
            Some(Value::String(s)) => Ok(s.clone()),
            Some(v @ (Value::Number(_) | Value::Bool(_))) => Ok(v.to_string()),
            None | Some(Value::Null) => Err(Error::invalid(
                field,
                format!("missing; `{}` needs it", self.template),
            )),
            Some(_) => Err(Error::invalid(
                field,
                format!(
                    "must be a string, number or boolean to fill in `{}`",
                    self.template
                ),
            )),
        }
    }
}

/// `key` in `map`, or, when no key has that name, the dotted path `a.b` through nested objects.
fn lookup<'a>(map: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    map.get(key).or_else(|| {
        let (first, rest) = key.split_once('.')?;
        match map.get(first)? {
            Value::Object(inner) => lookup(inner, rest),
            _ => None,
        }
    })
}

/// The `||`-separated alternatives of a template, ignoring `||` inside `${...}`.
fn alternatives(template: &str) -> Vec<&str> {
    let bytes = template.as_bytes();
    let mut parts = Vec::new();
    let (mut depth, mut start, mut i) = (0usize, 0, 0);
    while i < bytes.len() {
        match bytes[i] {
            b'$' if bytes.get(i + 1) == Some(&b'{') => {
                depth += 1;
                i += 1;
            }
            b'}' if depth > 0 => depth -= 1,
            b'|' if depth == 0 && bytes.get(i + 1) == Some(&b'|') => {
                parts.push(&template[start..i]);
                start = i + 2;
                i += 1;
            }
            _ => {}
        }
        i += 1;
    }
    parts.push(&template[start..]);
    parts
}

/// Index of the `}` that closes an expression whose `${` was just consumed, allowing nested
/// `${...}`.
fn closing_brace(text: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut depth = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'$' if bytes.get(i + 1) == Some(&b'{') => {
                depth += 1;
                i += 1;
            }
            b'}' if depth == 0 => return Some(i),
            b'}' => depth -= 1,
            _ => {}
        }
        i += 1;
    }
    None
}
