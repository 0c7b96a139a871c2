//! `nango.yaml`, both of Nango's layouts:
//!
//! - v2: `integrations: <key>: {syncs: {<name>: {...}}, actions: {<name>: {...}}, on-events:
//!   {<event>: [<name>, ...]}}`
//! - v1: `integrations: <key>: {<name>: {type: sync|action, runs, returns, ...}}`
//!
//! plus `models: <Name>: {<field>: <type>, __extends: Other}`. Every value is read with its
//! location, so a problem names the line and column it comes from.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use serde_saphyr::Spanned;

use lasso_core::scripts::{
    Diagnostic, Endpoint, FunctionConfig, FunctionType, Model, SyncSettings, SyncType, Trigger,
    parse_frequency,
};

/// A YAML value with the location of every node.
#[derive(Debug)]
enum Node {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Spanned<Node>>),
    Map(Vec<(Spanned<String>, Spanned<Node>)>),
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NodeVisitor;

        impl<'de> Visitor<'de> for NodeVisitor {
            type Value = Node;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a YAML value")
            }
            fn visit_unit<E>(self) -> Result<Node, E> {
                Ok(Node::Null)
            }
            fn visit_none<E>(self) -> Result<Node, E> {
                Ok(Node::Null)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
                Node::deserialize(d)
            }
            fn visit_bool<E>(self, v: bool) -> Result<Node, E> {
                Ok(Node::Bool(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Node, E> {
                Ok(Node::Int(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Node, E> {
                i64::try_from(v)
                    .map(Node::Int)
                    .map_err(|_| E::custom("integer too large"))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Node, E> {
                Ok(Node::Float(v))
            }
            fn visit_str<E>(self, v: &str) -> Result<Node, E> {
                Ok(Node::Str(v.to_string()))
            }
            fn visit_string<E>(self, v: String) -> Result<Node, E> {
                Ok(Node::Str(v))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(Node::Seq(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry()? {
                    entries.push(entry);
                }
                Ok(Node::Map(entries))
            }
        }

        deserializer.deserialize_any(NodeVisitor)
    }
}

fn to_json(node: &Node) -> Value {
    match node {
        Node::Null => Value::Null,
        Node::Bool(b) => Value::Bool(*b),
        Node::Int(i) => Value::from(*i),
        Node::Float(f) => Value::from(*f),
        Node::Str(s) => Value::String(s.clone()),
        Node::Seq(items) => Value::Array(items.iter().map(|i| to_json(&i.value)).collect()),
        Node::Map(entries) => Value::Object(
            entries
                .iter()
                .map(|(k, v)| (k.value.clone(), to_json(&v.value)))
                .collect(),
        ),
    }
}

/// A function configured in `nango.yaml`, with the location of its name.
#[derive(Debug)]
pub(crate) struct YamlFunction {
    pub integration: String,
    pub name: String,
    pub config: FunctionConfig,
    pub line: u32,
    pub column: u32,
}

struct Reader<'a> {
    file: &'a str,
    diagnostics: Vec<Diagnostic>,
    models: BTreeMap<String, Map<String, Value>>,
}

type Loc = serde_saphyr::Location;

fn line_col(loc: &Loc) -> (u32, u32) {
    (
        u32::try_from(loc.line()).unwrap_or(u32::MAX),
        u32::try_from(loc.column()).unwrap_or(u32::MAX),
    )
}

impl Reader<'_> {
    fn error(&mut self, loc: &Loc, message: impl Into<String>) {
        let (line, column) = line_col(loc);
        self.diagnostics.push(Diagnostic {
            file: self.file.to_string(),
            line,
            column,
            message: message.into(),
        });
    }

    /// The entries of a mapping, or an error naming `what`.
    fn map<'n>(
        &mut self,
        node: &'n Spanned<Node>,
        what: &str,
    ) -> Option<&'n [(Spanned<String>, Spanned<Node>)]> {
        match &node.value {
            Node::Map(entries) => Some(entries),
            Node::Null => Some(&[]),
            _ => {
                self.error(&node.referenced, format!("{what}: expected a mapping"));
                None
            }
        }
    }

    fn string(&mut self, node: &Spanned<Node>, field: &str) -> Option<String> {
        match &node.value {
            Node::Str(s) => Some(s.clone()),
            Node::Int(i) => Some(i.to_string()),
            Node::Float(f) => Some(f.to_string()),
            _ => {
                self.error(&node.referenced, format!("`{field}`: expected a string"));
                None
            }
        }
    }

    fn bool(&mut self, node: &Spanned<Node>, field: &str) -> Option<bool> {
        match &node.value {
            Node::Bool(b) => Some(*b),
            _ => {
                self.error(
                    &node.referenced,
                    format!("`{field}`: expected true or false"),
                );
                None
            }
        }
    }

    /// A string or a list of strings; `comma` splits a single string on commas (scopes).
    fn strings(&mut self, node: &Spanned<Node>, field: &str, comma: bool) -> Vec<String> {
        match &node.value {
            Node::Null => Vec::new(),
            Node::Str(s) if comma => s
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
            Node::Seq(items) => items.iter().filter_map(|i| self.string(i, field)).collect(),
            _ => self.string(node, field).into_iter().collect(),
        }
    }

    /// `GET /path`, `/path` (with `default_method`), `{method, path, group}` or Nango's older
    /// `{GET: /path}`; a list of those when `many`.
    fn endpoints(
        &mut self,
        node: &Spanned<Node>,
        field: &str,
        default_method: &str,
    ) -> Vec<Endpoint> {
        match &node.value {
            Node::Seq(items) => items
                .iter()
                .filter_map(|i| self.endpoint(i, field, default_method))
                .collect(),
            _ => self
                .endpoint(node, field, default_method)
                .into_iter()
                .collect(),
        }
    }

    fn endpoint(
        &mut self,
        node: &Spanned<Node>,
        field: &str,
        default_method: &str,
    ) -> Option<Endpoint> {
        let endpoint = match &node.value {
            Node::Str(s) => match s.trim().split_once(' ') {
                Some((method, path)) => Endpoint {
                    method: method.to_ascii_uppercase(),
                    path: path.trim().to_string(),
                    group: None,
                },
                None => Endpoint {
                    method: default_method.to_string(),
                    path: s.trim().to_string(),
                    group: None,
                },
            },
            Node::Map(entries) if entries.len() == 1 && is_method(&entries[0].0.value) => {
                let path = self.string(&entries[0].1, field)?;
                Endpoint {
                    method: entries[0].0.value.to_ascii_uppercase(),
                    path,
                    group: None,
                }
            }
            Node::Map(entries) => {
                let mut endpoint = Endpoint {
                    method: default_method.to_string(),
                    path: String::new(),
                    group: None,
                };
                for (key, value) in entries {
                    match key.value.as_str() {
                        "method" => endpoint.method = self.string(value, "method")?,
                        "path" => endpoint.path = self.string(value, "path")?,
                        "group" => endpoint.group = self.string(value, "group"),
                        other => self.error(
                            &key.referenced,
                            format!("`{field}`: unknown endpoint field `{other}`"),
                        ),
                    }
                }
                endpoint
            }
            _ => {
                self.error(
                    &node.referenced,
                    format!("`{field}`: expected `METHOD /path` or {{method, path}}"),
                );
                return None;
            }
        };
        if !is_method(&endpoint.method) || !endpoint.path.starts_with('/') {
            self.error(
                &node.referenced,
                format!(
                    "`{field}`: `{} {}` is not an endpoint; write e.g. `GET /issues`",
                    endpoint.method, endpoint.path
                ),
            );
            return None;
        }
        Some(endpoint)
    }

    /// Reads `models:`, resolving `__extends`.
    fn read_models(&mut self, node: &Spanned<Node>) {
        let Some(entries) = self.map(node, "models") else {
            return;
        };
        let raw: BTreeMap<&str, &Spanned<Node>> =
            entries.iter().map(|(k, v)| (k.value.as_str(), v)).collect();
        for (key, value) in entries {
            if !key
                .value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
                || key.value.is_empty()
            {
                self.error(
                    &key.referenced,
                    format!(
                        "model name `{}`: use letters, digits and `_` only",
                        key.value
                    ),
                );
                continue;
            }
            if !matches!(value.value, Node::Map(_)) {
                self.error(
                    &value.referenced,
                    format!("model `{}`: expected a mapping of fields", key.value),
                );
                continue;
            }
            let mut stack = Vec::new();
            if let Some(fields) = self.model_fields(&key.value, &raw, &mut stack) {
                self.models.insert(key.value.clone(), fields);
            }
        }
    }

    fn model_fields(
        &mut self,
        name: &str,
        raw: &BTreeMap<&str, &Spanned<Node>>,
        stack: &mut Vec<String>,
    ) -> Option<Map<String, Value>> {
        if let Some(done) = self.models.get(name) {
            return Some(done.clone());
        }
        let Node::Map(entries) = &raw.get(name)?.value else {
            return None;
        };
        stack.push(name.to_string());
        let mut fields = Map::new();
        for (key, value) in entries {
            if key.value != "__extends" {
                fields.insert(key.value.clone(), to_json(&value.value));
                continue;
            }
            let Some(parents) = self.string(value, "__extends") else {
                continue;
            };
            for parent in parents.split(',').map(str::trim) {
                if stack.iter().any(|s| s == parent) {
                    self.error(
                        &value.referenced,
                        format!(
                            "model `{name}`: `__extends` forms a cycle: {} -> {parent}",
                            stack.join(" -> ")
                        ),
                    );
                } else if !raw.contains_key(parent) {
                    self.error(
                        &value.referenced,
                        format!(
                            "model `{name}`: `__extends` names `{parent}`, which is not a model"
                        ),
                    );
                } else if let Some(inherited) = self.model_fields(parent, raw, stack) {
                    for (k, v) in inherited {
                        fields.entry(k).or_insert(v);
                    }
                }
            }
        }
        stack.pop();
        Some(fields)
    }

    /// The models named by `output` / `input`. A name that is not a model is, as in Nango, a
    /// type written inline (`boolean`, `string[]`), kept as an anonymous model — except for a
    /// sync's output, which must be a model.
    fn resolve_models(&mut self, config: &mut FunctionConfig, integration: &str, name: &str) {
        let kind = config.function_type();
        let anonymous = |side: &str| {
            let clean = |s: &str| s.replace(|c: char| !c.is_ascii_alphanumeric() && c != '_', "");
            format!(
                "Anonymous_{}_{}_{}_{side}",
                clean(integration),
                kind.as_str().replace('-', "_"),
                clean(name)
            )
        };
        let mut models = Vec::new();
        let mut outputs = Vec::new();
        for output in std::mem::take(&mut config.output) {
            if let Some(fields) = self.models.get(&output) {
                models.push(Model {
                    json_schema: None,
                    name: output.clone(),
                    fields: Some(fields.clone()),
                });
                outputs.push(output);
            } else if kind == FunctionType::Sync {
                // Reported by `check_config`: a sync's output must be a model.
                outputs.push(output);
            } else {
                let anon = anonymous("output");
                models.push(Model {
                    json_schema: None,
                    name: anon.clone(),
                    fields: Some(Map::from_iter([("output".into(), Value::String(output))])),
                });
                outputs.push(anon);
            }
        }
        config.output = outputs;
        if let Some(input) = config.input.take() {
            if let Some(fields) = self.models.get(&input) {
                models.push(Model {
                    json_schema: None,
                    name: input.clone(),
                    fields: Some(fields.clone()),
                });
                config.input = Some(input);
            } else {
                let anon = anonymous("input");
                models.push(Model {
                    json_schema: None,
                    name: anon.clone(),
                    fields: Some(Map::from_iter([("input".into(), Value::String(input))])),
                });
                config.input = Some(anon);
            }
        }
        config.models = models;
    }

    /// Reads a field syncs and actions share into `config`; false when `field` is not one.
    fn common_field(
        &mut self,
        config: &mut FunctionConfig,
        field: &str,
        value: &Spanned<Node>,
        v1: bool,
    ) -> bool {
        match field {
            "output" if !v1 => config.output = self.strings(value, field, false),
            "returns" if v1 => config.output = self.strings(value, field, false),
            "type" if v1 => {}
            "input" if !v1 => config.input = self.string(value, field),
            "description" => {
                config.description = self
                    .string(value, field)
                    .map(|d| d.trim().to_string())
                    .unwrap_or_default()
            }
            "version" => config.version = self.string(value, field),
            "scopes" if !v1 => config.scopes = self.strings(value, field, true),
            _ => return false,
        }
        true
    }

    fn sync(
        &mut self,
        name: &str,
        node: &Spanned<Node>,
        v1: bool,
    ) -> Option<(FunctionConfig, Loc)> {
        let entries = self.map(node, &format!("sync `{name}`"))?;
        let mut runs: Option<(String, Loc)> = None;
        let mut config = empty_config(Trigger::Action);
        let mut sync_type = if v1 {
            SyncType::Incremental
        } else {
            SyncType::Full
        };
        let (mut auto_start, mut track_deletes) = (true, false);
        let mut webhook_subscriptions = Vec::new();
        for (key, value) in entries {
            let field = key.value.as_str();
            if self.common_field(&mut config, field, value, v1) {
                continue;
            }
            match field {
                "runs" => runs = self.string(value, field).map(|r| (r, value.referenced)),
                "endpoint" | "endpoints" if !v1 => {
                    config.endpoints = self.endpoints(value, field, "GET")
                }
                "sync_type" if !v1 => match self.string(value, field).as_deref() {
                    Some(t) if t.eq_ignore_ascii_case("incremental") => {
                        sync_type = SyncType::Incremental
                    }
                    Some(t) if t.eq_ignore_ascii_case("full") => sync_type = SyncType::Full,
                    Some(t) => self.error(
                        &value.referenced,
                        format!("`sync_type`: `{t}` is not `full` or `incremental`"),
                    ),
                    None => {}
                },
                "auto_start" => auto_start = self.bool(value, field).unwrap_or(true),
                "track_deletes" => track_deletes = self.bool(value, field).unwrap_or(false),
                "webhook-subscriptions" if !v1 => {
                    webhook_subscriptions = self.strings(value, field, false)
                }
                other => self.error(
                    &key.referenced,
                    format!("sync `{name}`: unknown field `{other}`"),
                ),
            }
        }
        let Some((runs, runs_loc)) = runs else {
            self.error(
                &node.referenced,
                format!("sync `{name}`: `runs` is missing (e.g. `runs: every hour`)"),
            );
            return None;
        };
        let frequency_secs = match parse_frequency(&runs) {
            Ok(secs) => secs,
            Err(e) => {
                self.error(&runs_loc, format!("sync `{name}`: `runs`: {e}"));
                return None;
            }
        };
        if config.output.is_empty() {
            self.error(
                &node.referenced,
                format!("sync `{name}`: `output` is missing (the models it saves)"),
            );
            return None;
        }
        if !v1 && !config.endpoints.is_empty() && config.endpoints.len() != config.output.len() {
            self.error(
                &node.referenced,
                format!("sync `{name}`: give one endpoint per output model"),
            );
        }
        config.trigger = Trigger::Sync(SyncSettings {
            runs,
            frequency_secs,
            sync_type,
            auto_start,
            track_deletes,
            webhook_subscriptions,
        });
        Some((config, node.referenced))
    }

    fn action(
        &mut self,
        name: &str,
        node: &Spanned<Node>,
        v1: bool,
    ) -> Option<(FunctionConfig, Loc)> {
        let entries = self.map(node, &format!("action `{name}`"))?;
        let mut config = empty_config(Trigger::Action);
        for (key, value) in entries {
            let field = key.value.as_str();
            if self.common_field(&mut config, field, value, v1) {
                continue;
            }
            match field {
                "endpoint" if !v1 => config.endpoints = self.endpoints(value, field, "POST"),
                other => self.error(
                    &key.referenced,
                    format!("action `{name}`: unknown field `{other}`"),
                ),
            }
        }
        Some((config, node.referenced))
    }
}

fn is_method(s: &str) -> bool {
    matches!(
        s.to_ascii_uppercase().as_str(),
        "GET" | "POST" | "PUT" | "PATCH" | "DELETE" | "PROPFIND" | "REPORT"
    )
}

fn empty_config(trigger: Trigger) -> FunctionConfig {
    FunctionConfig {
        trigger,
        description: String::new(),
        version: None,
        scopes: Vec::new(),
        input: None,
        output: Vec::new(),
        models: Vec::new(),
        endpoints: Vec::new(),
    }
}

const V2_KEYS: [&str; 5] = [
    "provider",
    "syncs",
    "actions",
    "on-events",
    "post-connection-scripts",
];

/// Parses `nango.yaml` (named `file` in messages). Returns the functions it configures, or
/// every problem found.
pub(crate) fn parse(file: &str, text: &str) -> Result<Vec<YamlFunction>, Vec<Diagnostic>> {
    let options = serde_saphyr::options! {
        // js-yaml, which Nango reads nango.yaml with, reads YAML 1.2: `yes`/`on` are strings.
        strict_booleans: true,
        with_snippet: false,
    };
    let root: Spanned<Node> = serde_saphyr::from_str_with_options(text, options).map_err(|e| {
        vec![Diagnostic {
            file: file.to_string(),
            line: 0,
            column: 0,
            message: format!("not valid YAML: {e}"),
        }]
    })?;
    let mut reader = Reader {
        file,
        diagnostics: Vec::new(),
        models: BTreeMap::new(),
    };
    let Some(top) = reader.map(&root, "nango.yaml") else {
        return Err(reader.diagnostics);
    };
    let mut integrations = None;
    for (key, value) in top {
        match key.value.as_str() {
            "integrations" => integrations = Some(value),
            "models" => reader.read_models(value),
            other => reader.error(
                &key.referenced,
                format!("unknown top-level key `{other}` (expected `integrations` and `models`)"),
            ),
        }
    }
    let Some(integrations) = integrations else {
        reader.error(&root.referenced, "`integrations` is missing");
        return Err(reader.diagnostics);
    };
    let mut functions = Vec::new();
    let entries = reader.map(integrations, "integrations").unwrap_or_default();
    for (key, value) in entries {
        let integration = key.value.clone();
        if let Err(e) = lasso_core::integrations::check_unique_key(&integration, "integration") {
            reader.error(&key.referenced, format!("integration `{integration}`: {e}"));
            continue;
        }
        let Some(body) = reader.map(value, &format!("integration `{integration}`")) else {
            continue;
        };
        let v2 = body
            .iter()
            .any(|(k, _)| V2_KEYS.contains(&k.value.as_str()));
        let mut found: Vec<(String, Spanned<String>, FunctionConfig, Loc)> = Vec::new();
        if v2 {
            for (section, node) in body {
                match section.value.as_str() {
                    "syncs" | "actions" => {
                        let Some(list) = reader.map(node, &section.value) else {
                            continue;
                        };
                        for (name, entry) in list {
                            let parsed = if section.value == "syncs" {
                                reader.sync(&name.value, entry, false)
                            } else {
                                reader.action(&name.value, entry, false)
                            };
                            if let Some((config, loc)) = parsed {
                                found.push((integration.clone(), name.clone(), config, loc));
                            }
                        }
                    }
                    "on-events" | "post-connection-scripts" => {
                        on_events(&mut reader, &integration, section, node, &mut found)
                    }
                    "provider" => {}
                    other => reader.error(
                        &section.referenced,
                        format!("integration `{integration}`: unknown key `{other}`"),
                    ),
                }
            }
        } else {
            for (name, entry) in body {
                let is_action = matches!(&entry.value, Node::Map(fields)
                    if fields.iter().any(|(k, v)| k.value == "type" && matches!(&v.value, Node::Str(t) if t == "action")));
                let parsed = if is_action {
                    reader.action(&name.value, entry, true)
                } else {
                    reader.sync(&name.value, entry, true)
                };
                if let Some((config, loc)) = parsed {
                    found.push((integration.clone(), name.clone(), config, loc));
                }
            }
        }
        let mut seen = BTreeSet::new();
        for (integration, name, mut config, loc) in found {
            if let Err(e) = lasso_core::scripts::check_function_name(&name.value) {
                reader.error(&name.referenced, e);
                continue;
            }
            if !seen.insert((config.function_type(), name.value.clone())) {
                reader.error(
                    &name.referenced,
                    format!(
                        "{} `{}` is configured twice in integration `{integration}`",
                        config.function_type(),
                        name.value
                    ),
                );
                continue;
            }
            reader.resolve_models(&mut config, &integration, &name.value);
            for (field, message) in lasso_core::scripts::check_config(&config) {
                reader.error(
                    &loc,
                    format!(
                        "{} `{}`: `{field}`: {message}",
                        config.function_type(),
                        name.value
                    ),
                );
            }
            let (line, column) = line_col(&name.referenced);
            functions.push(YamlFunction {
                integration,
                name: name.value,
                config,
                line,
                column,
            });
        }
    }
    if reader.diagnostics.is_empty() {
        Ok(functions)
    } else {
        reader.diagnostics.sort_by_key(|d| (d.line, d.column));
        Err(reader.diagnostics)
    }
}

/// `on-events: {<event>: [<script>, ...]}` (and the older `post-connection-scripts: [...]`).
fn on_events(
    reader: &mut Reader<'_>,
    integration: &str,
    section: &Spanned<String>,
    node: &Spanned<Node>,
    found: &mut Vec<(String, Spanned<String>, FunctionConfig, Loc)>,
) {
    let lists: Vec<(String, &Spanned<Node>)> = if section.value == "post-connection-scripts" {
        vec![("post-connection-creation".to_string(), node)]
    } else {
        let Some(entries) = reader.map(node, "on-events") else {
            return;
        };
        entries.iter().map(|(k, v)| (k.value.clone(), v)).collect()
    };
    for (event, list) in lists {
        let Node::Seq(items) = &list.value else {
            reader.error(
                &list.referenced,
                format!("`on-events.{event}`: expected a list of script names"),
            );
            continue;
        };
        for item in items {
            let Some(name) = reader.string(item, "on-events") else {
                continue;
            };
            let config = empty_config(Trigger::OnEvent {
                event: event.clone(),
            });
            found.push((
                integration.to_string(),
                Spanned::new(name, item.referenced, item.defined),
                config,
                item.referenced,
            ));
        }
    }
}
