//! The configuration of a script written in Nango's object form, read from its AST without
//! running it: `export default createSync({ frequency: 'every hour', models: {...}, exec })`,
//! `createAction({ input, output, exec })`, `createOnEvent({ event, exec })`. Only literals
//! can be read this way; a field Lasso needs that is computed (a variable, a call) is an error.

use oxc::ast::ast::{
    ArrayExpressionElement, Expression, ObjectExpression, ObjectPropertyKind, Program, Statement,
};
use oxc::span::Span;
use serde_json::{Map, Value};

use lasso_core::scripts::{
    Endpoint, FunctionConfig, FunctionType, Model, SyncSettings, SyncType, Trigger, parse_frequency,
};

/// A problem at a place in the script.
pub(crate) type Problem = (Span, String);

/// Finds the top-level `createSync` / `createAction` / `createOnEvent` call of the module, if
/// any: exported directly, or bound to a variable.
pub(crate) fn find<'p, 'a>(
    program: &'p Program<'a>,
) -> Option<(FunctionType, &'p ObjectExpression<'a>, Span)> {
    let mut candidates: Vec<&Expression> = Vec::new();
    for statement in &program.body {
        match statement {
            Statement::ExportDefaultDeclaration(d) => {
                if let Some(e) = d.declaration.as_expression() {
                    candidates.push(e);
                }
            }
            Statement::VariableDeclaration(v) => {
                candidates.extend(v.declarations.iter().filter_map(|d| d.init.as_ref()))
            }
            Statement::ExportDeclaration(e) => {
                if let oxc::ast::ast::Declaration::VariableDeclaration(v) = &e.declaration {
                    candidates.extend(v.declarations.iter().filter_map(|d| d.init.as_ref()))
                }
            }
            _ => {}
        }
    }
    candidates.into_iter().find_map(|e| {
        let Expression::CallExpression(call) = e.get_inner_expression() else {
            return None;
        };
        let kind = if call.callee.is_specific_id("createSync") {
            FunctionType::Sync
        } else if call.callee.is_specific_id("createAction") {
            FunctionType::Action
        } else if call.callee.is_specific_id("createOnEvent") {
            FunctionType::OnEvent
        } else {
            return None;
        };
        let arg = call.arguments.first()?.as_expression()?;
        match arg.get_inner_expression() {
            Expression::ObjectExpression(obj) => Some((kind, &**obj, call.span)),
            _ => None,
        }
    })
}

/// Reads the configuration from the object passed to `createSync` & co.
pub(crate) fn read(
    kind: FunctionType,
    object: &ObjectExpression<'_>,
    call: Span,
) -> Result<FunctionConfig, Vec<Problem>> {
    let mut problems = Vec::new();
    let mut fields: Vec<(String, &Expression)> = Vec::new();
    for property in &object.properties {
        match property {
            ObjectPropertyKind::ObjectProperty(p) if !p.computed => {
                if let Some(name) = p.key.static_name() {
                    fields.push((name.into_owned(), &p.value));
                }
            }
            // `exec() {}` methods and spreads cannot carry a field Lasso reads.
            _ => {}
        }
    }
    let get = |name: &str| fields.iter().find(|(n, _)| n == name).map(|(_, e)| *e);
    let mut r = Reader {
        problems: &mut problems,
    };
    if get("exec").is_none() {
        r.error(
            object.span,
            format!("`{}` needs an `exec` function", callee(kind)),
        );
    }
    let mut config = FunctionConfig {
        trigger: Trigger::Action,
        description: get("description")
            .and_then(|e| r.string(e, "description"))
            .unwrap_or_default(),
        version: get("version").and_then(|e| r.string(e, "version")),
        scopes: get("scopes")
            .map(|e| r.strings(e, "scopes"))
            .unwrap_or_default(),
        input: None,
        output: Vec::new(),
        models: Vec::new(),
        endpoints: Vec::new(),
    };
    match kind {
        FunctionType::Sync => {
            let runs_field = if get("frequency").is_some() {
                "frequency"
            } else {
                "runs"
            };
            let runs = match get(runs_field) {
                Some(e) => r.string(e, runs_field).map(|s| (s, e)),
                None => {
                    r.error(
                        call,
                        "`createSync` needs `frequency` (e.g. `frequency: 'every hour'`)",
                    );
                    None
                }
            };
            let frequency = runs.and_then(|(runs, e)| match parse_frequency(&runs) {
                Ok(secs) => Some((runs, secs)),
                Err(message) => {
                    r.error(span_of(e), format!("`{runs_field}`: {message}"));
                    None
                }
            });
            let sync_type =
                match get("syncType").and_then(|e| r.string(e, "syncType").map(|s| (s, e))) {
                    None => SyncType::Full,
                    Some((s, _)) if s == "full" => SyncType::Full,
                    Some((s, _)) if s == "incremental" => SyncType::Incremental,
                    Some((s, e)) => {
                        r.error(
                            span_of(e),
                            format!("`syncType`: `{s}` is not `full` or `incremental`"),
                        );
                        SyncType::Full
                    }
                };
            match get("models") {
                Some(Expression::ObjectExpression(models)) => {
                    for property in &models.properties {
                        let ObjectPropertyKind::ObjectProperty(p) = property else {
                            r.error(property_span(property), "`models`: expected `Name: schema` entries");
                            continue;
                        };
                        let Some(name) = p.key.static_name().filter(|_| !p.computed) else {
                            r.error(p.span, "`models`: model names must be written out");
                            continue;
                        };
                        config.output.push(name.to_string());
                        config.models.push(Model {
                            name: name.into_owned(),
                            fields: match literal(&p.value) {
                                Some(Value::Object(fields)) => Some(fields),
                                _ => None,
                            },
                        });
                    }
                }
                Some(other) => r.error(
                    span_of(other),
                    "`models`: expected an object literal `{ ModelName: schema }` (Lasso reads it without running the script)",
                ),
                None => r.error(call, "`createSync` needs `models` (the models it saves)"),
            }
            if let Some(e) = get("endpoints") {
                config.endpoints = r.endpoints(e, "endpoints");
            }
            if let Some((runs, frequency_secs)) = frequency {
                config.trigger = Trigger::Sync(SyncSettings {
                    runs,
                    frequency_secs,
                    sync_type,
                    auto_start: get("autoStart")
                        .and_then(|e| r.bool(e, "autoStart"))
                        .unwrap_or(true),
                    track_deletes: get("trackDeletes")
                        .and_then(|e| r.bool(e, "trackDeletes"))
                        .unwrap_or(false),
                    webhook_subscriptions: get("webhookSubscriptions")
                        .map(|e| r.strings(e, "webhookSubscriptions"))
                        .unwrap_or_default(),
                });
            }
        }
        FunctionType::Action => {
            if let Some(e) = get("endpoint") {
                config.endpoints = r.endpoints(e, "endpoint");
            }
            // A schema bound to a name gives the model its name; its fields are zod, which
            // Lasso does not evaluate.
            for (field, slot) in [("input", true), ("output", false)] {
                if let Some(Expression::Identifier(id)) =
                    get(field).map(Expression::get_inner_expression)
                {
                    let name = id.name.to_string();
                    if slot {
                        config.input = Some(name.clone());
                    } else {
                        config.output.push(name.clone());
                    }
                    if !config.models.iter().any(|m| m.name == name) {
                        config.models.push(Model { name, fields: None });
                    }
                }
            }
        }
        FunctionType::OnEvent => match get("event") {
            Some(e) => {
                if let Some(event) = r.string(e, "event") {
                    config.trigger = Trigger::OnEvent { event };
                }
            }
            None => r.error(call, "`createOnEvent` needs `event`"),
        },
    }
    if config.function_type() == kind {
        for (field, message) in lasso_core::scripts::check_config(&config) {
            problems.push((call, format!("`{field}`: {message}")));
        }
    }
    if problems.is_empty() {
        Ok(config)
    } else {
        Err(problems)
    }
}

fn callee(kind: FunctionType) -> &'static str {
    match kind {
        FunctionType::Sync => "createSync",
        FunctionType::Action => "createAction",
        FunctionType::OnEvent => "createOnEvent",
    }
}

fn span_of(e: &Expression<'_>) -> Span {
    oxc::span::GetSpan::span(e)
}

fn property_span(p: &ObjectPropertyKind<'_>) -> Span {
    oxc::span::GetSpan::span(p)
}

/// The JSON value of a literal (object and array literals of literals), or `None`.
fn literal(e: &Expression<'_>) -> Option<Value> {
    Some(match e.get_inner_expression() {
        Expression::StringLiteral(s) => Value::String(s.value.to_string()),
        Expression::TemplateLiteral(t) if t.expressions.is_empty() => {
            Value::String(t.quasis.first()?.value.cooked?.to_string())
        }
        Expression::BooleanLiteral(b) => Value::Bool(b.value),
        Expression::NumericLiteral(n) => {
            serde_json::Number::from_f64(n.value).map(Value::Number)?
        }
        Expression::NullLiteral(_) => Value::Null,
        Expression::ArrayExpression(a) => Value::Array(
            a.elements
                .iter()
                .map(|el| match el {
                    ArrayExpressionElement::SpreadElement(_)
                    | ArrayExpressionElement::Elision(_) => None,
                    other => literal(other.as_expression()?),
                })
                .collect::<Option<Vec<_>>>()?,
        ),
        Expression::ObjectExpression(o) => {
            let mut map = Map::new();
            for property in &o.properties {
                let ObjectPropertyKind::ObjectProperty(p) = property else {
                    return None;
                };
                if p.computed {
                    return None;
                }
                map.insert(p.key.static_name()?.into_owned(), literal(&p.value)?);
            }
            Value::Object(map)
        }
        _ => return None,
    })
}

struct Reader<'p> {
    problems: &'p mut Vec<Problem>,
}

impl Reader<'_> {
    fn error(&mut self, span: Span, message: impl Into<String>) {
        self.problems.push((span, message.into()));
    }

    fn not_literal(&mut self, e: &Expression<'_>, field: &str, expected: &str) {
        self.error(
            span_of(e),
            format!("`{field}`: expected {expected}; Lasso reads the configuration without running the script, so write it as a literal"),
        );
    }

    fn string(&mut self, e: &Expression<'_>, field: &str) -> Option<String> {
        match literal(e) {
            Some(Value::String(s)) => Some(s),
            _ => {
                self.not_literal(e, field, "a string");
                None
            }
        }
    }

    fn bool(&mut self, e: &Expression<'_>, field: &str) -> Option<bool> {
        match literal(e) {
            Some(Value::Bool(b)) => Some(b),
            _ => {
                self.not_literal(e, field, "true or false");
                None
            }
        }
    }

    fn strings(&mut self, e: &Expression<'_>, field: &str) -> Vec<String> {
        match literal(e) {
            Some(Value::Array(items)) if items.iter().all(Value::is_string) => items
                .into_iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect(),
            _ => {
                self.not_literal(e, field, "an array of strings");
                Vec::new()
            }
        }
    }

    /// `{ method, path, group }` or an array of them.
    fn endpoints(&mut self, e: &Expression<'_>, field: &str) -> Vec<Endpoint> {
        let items = match literal(e) {
            Some(Value::Array(items)) => items,
            Some(obj @ Value::Object(_)) => vec![obj],
            _ => {
                self.not_literal(e, field, "`{ method, path }` objects");
                return Vec::new();
            }
        };
        let mut endpoints = Vec::new();
        for item in items {
            match serde_json::from_value::<Endpoint>(item) {
                Ok(endpoint) if endpoint.path.starts_with('/') => endpoints.push(endpoint),
                Ok(endpoint) => self.error(
                    span_of(e),
                    format!("`{field}`: path `{}` must start with `/`", endpoint.path),
                ),
                Err(err) => self.error(span_of(e), format!("`{field}`: {err}")),
            }
        }
        endpoints
    }
}
