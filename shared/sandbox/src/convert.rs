//! JavaScript values to JSON without going through `JSON.stringify`, so a value JSON cannot hold
//! is reported with its path (`records[3].createdAt is a function`) instead of vanishing.
//!
//! Records cross this boundary by the thousand, so the common path allocates nothing it can
//! avoid: property names are turned into Rust strings once per conversion, the `toJSON` atom is
//! made once, and the path of a bad value is only put together when there is one.

use std::collections::HashMap;

use rustc_hash::FxBuildHasher;

use rquickjs::atom::PredefinedAtom;
use rquickjs::object::Property;
use rquickjs::{Atom, Ctx, Object, Type, Value};
use serde_json::{Map, Number, Value as Json};

/// 2^63: integral doubles below it are exact `i64`s.
const I64_BOUND: f64 = 9_223_372_036_854_775_808.0;

/// Deep enough for any real record, shallow enough to catch cycles quickly.
const MAX_DEPTH: usize = 256;

/// One step of the path to a bad value, innermost first while the error travels up.
enum Step {
    Key(String),
    Index(usize),
}

/// A value JSON cannot hold, and where it is.
struct Problem {
    steps: Vec<Step>,
    message: Message,
}

enum Message {
    /// `{path} {what}; records and outputs must be JSON (...)`
    NotJson(String),
    TooDeep,
    ToJsonFailed(String),
    Unreadable(String),
}

impl Problem {
    fn new(message: Message) -> Self {
        Self {
            steps: Vec::new(),
            message,
        }
    }

    fn at(mut self, step: Step) -> Self {
        self.steps.push(step);
        self
    }

    fn describe(self, root: String) -> String {
        let mut path = root;
        for step in self.steps.iter().rev() {
            match step {
                Step::Key(key) => {
                    path.push('.');
                    path.push_str(key);
                }
                Step::Index(i) => path.push_str(&format!("[{i}]")),
            }
        }
        match self.message {
            Message::NotJson(what) => format!(
                "{path} {what}; records and outputs must be JSON (objects, arrays, strings, finite numbers, booleans, null)"
            ),
            Message::TooDeep => {
                format!("{path} is nested more than {MAX_DEPTH} levels deep (a cycle?)")
            }
            Message::ToJsonFailed(e) => format!("{path}.toJSON() failed: {e}"),
            Message::Unreadable(e) => format!("{path}: {e}"),
        }
    }
}

fn not_json(what: impl Into<String>) -> Problem {
    Problem::new(Message::NotJson(what.into()))
}

/// Converts JavaScript values of one context to JSON; keep one for a batch so property names
/// seen before cost a lookup, not a conversion.
pub struct ToJson<'js> {
    to_json: Atom<'js>,
    keys: HashMap<Atom<'js>, String, FxBuildHasher>,
}

impl<'js> ToJson<'js> {
    pub fn new(ctx: &Ctx<'js>) -> Self {
        Self {
            to_json: Atom::from_predefined(ctx.clone(), PredefinedAtom::ToJSON),
            keys: HashMap::default(),
        }
    }

    /// `value` as JSON; an error names the bad value's path below `root`, which is only
    /// made when there is an error.
    pub fn convert(
        &mut self,
        value: &Value<'js>,
        root: impl FnOnce() -> String,
    ) -> Result<Json, String> {
        self.value(value, 0).map_err(|p| p.describe(root()))
    }

    fn value(&mut self, value: &Value<'js>, depth: usize) -> Result<Json, Problem> {
        if depth > MAX_DEPTH {
            return Err(Problem::new(Message::TooDeep));
        }
        match value.type_of() {
            Type::Null | Type::Undefined | Type::Uninitialized => Ok(Json::Null),
            Type::Bool => Ok(Json::Bool(value.as_bool().unwrap_or_default())),
            Type::Int => Ok(Json::Number(Number::from(
                value.as_int().unwrap_or_default(),
            ))),
            Type::Float => number(value.as_float().unwrap_or_default()),
            Type::String => value
                .as_string()
                .and_then(|s| s.to_string().ok())
                .map(Json::String)
                .ok_or_else(|| not_json("is a string that is not valid UTF-16")),
            Type::Array => {
                let array = value.as_array().expect("type is array");
                let mut out = Vec::with_capacity(array.len());
                for (i, item) in array.iter::<Value>().enumerate() {
                    let item = item.map_err(|e| {
                        Problem::new(Message::Unreadable(e.to_string())).at(Step::Index(i))
                    })?;
                    // Like JSON.stringify: holes and undefined items become null.
                    let converted = if item.is_undefined() {
                        Json::Null
                    } else {
                        self.value(&item, depth + 1)
                            .map_err(|p| p.at(Step::Index(i)))?
                    };
                    out.push(converted);
                }
                Ok(Json::Array(out))
            }
            Type::Object | Type::Exception => {
                let object = value.as_object().expect("type is object");
                let to_json: Value = object
                    .get(self.to_json.clone())
                    .map_err(|e| Problem::new(Message::Unreadable(e.to_string())))?;
                if let Some(to_json) = to_json.as_function() {
                    // Dates and other values that say how they serialize.
                    let replaced: Value = to_json
                        .call((rquickjs::function::This(object.clone()),))
                        .map_err(|e| Problem::new(Message::ToJsonFailed(e.to_string())))?;
                    return self.value(&replaced, depth + 1);
                }
                self.object(object, depth)
            }
            Type::Function | Type::Constructor => Err(not_json("is a function")),
            Type::Symbol => Err(not_json("is a symbol")),
            Type::BigInt => Err(not_json("is a BigInt")),
            Type::Promise => Err(not_json("is a Promise (missing `await`?)")),
            other => Err(not_json(format!("is a {other:?}"))),
        }
    }

    fn object(&mut self, object: &Object<'js>, depth: usize) -> Result<Json, Problem> {
        let mut out = Map::new();
        for entry in object.props::<Atom, Value>() {
            let (atom, item) =
                entry.map_err(|e| Problem::new(Message::Unreadable(e.to_string())))?;
            // Like JSON.stringify: undefined properties are left out.
            if item.is_undefined() {
                continue;
            }
            let key = match self.keys.get(&atom) {
                Some(key) => key.clone(),
                None => {
                    let key = atom
                        .to_string()
                        .map_err(|e| Problem::new(Message::Unreadable(e.to_string())))?;
                    self.keys.insert(atom, key.clone());
                    key
                }
            };
            match self.value(&item, depth + 1) {
                Ok(converted) => {
                    out.insert(key, converted);
                }
                Err(p) => return Err(p.at(Step::Key(key))),
            }
        }
        Ok(Json::Object(out))
    }
}

fn number(f: f64) -> Result<Json, Problem> {
    if !f.is_finite() {
        return Err(not_json(format!("is {f}")));
    }
    // Integral doubles are written as integers, as JSON.stringify writes them.
    if f.fract() == 0.0 && f.abs() < I64_BOUND {
        return Ok(Json::Number(Number::from(f as i64)));
    }
    Number::from_f64(f)
        .map(Json::Number)
        .ok_or_else(|| not_json("is not a JSON number"))
}

/// One value as JSON (see [`ToJson`]); errors name the path below `root`.
pub fn to_json<'js>(value: &Value<'js>, root: &str) -> Result<Json, String> {
    ToJson::new(value.ctx()).convert(value, || root.to_string())
}

/// JSON into a JavaScript value, built directly (about twice as fast as `JSON.parse` of its
/// text in QuickJS). Keys repeat across the objects of a payload; each becomes an atom once.
pub fn from_json<'js>(ctx: &Ctx<'js>, value: &Json) -> rquickjs::Result<Value<'js>> {
    FromJson {
        ctx,
        keys: HashMap::default(),
    }
    .value(value)
}

struct FromJson<'a, 'js> {
    ctx: &'a Ctx<'js>,
    keys: HashMap<&'a str, Atom<'js>, FxBuildHasher>,
}

impl<'a, 'js> FromJson<'a, 'js> {
    fn value(&mut self, value: &'a Json) -> rquickjs::Result<Value<'js>> {
        let ctx = self.ctx;
        Ok(match value {
            Json::Null => Value::new_null(ctx.clone()),
            Json::Bool(b) => Value::new_bool(ctx.clone(), *b),
            Json::Number(n) => match n.as_i64().and_then(|i| i32::try_from(i).ok()) {
                Some(i) => Value::new_int(ctx.clone(), i),
                None => Value::new_float(ctx.clone(), n.as_f64().unwrap_or(f64::NAN)),
            },
            Json::String(s) => rquickjs::String::from_str(ctx.clone(), s)?.into_value(),
            Json::Array(items) => {
                let array = rquickjs::Array::new(ctx.clone())?;
                for (i, item) in items.iter().enumerate() {
                    array.set(i, self.value(item)?)?;
                }
                array.into_value()
            }
            Json::Object(fields) => {
                let object = Object::new(ctx.clone())?;
                for (key, item) in fields {
                    let atom = match self.keys.get(key.as_str()) {
                        Some(atom) => atom.clone(),
                        None => {
                            let atom = Atom::from_str(ctx.clone(), key)?;
                            self.keys.insert(key, atom.clone());
                            atom
                        }
                    };
                    let item = self.value(item)?;
                    if key == "__proto__" {
                        // An own property, as JSON.parse makes it, not a new prototype.
                        object.prop(
                            atom,
                            Property::from(item).enumerable().writable().configurable(),
                        )?;
                    } else {
                        object.set(atom, item)?;
                    }
                }
                object.into_value()
            }
        })
    }
}
