//! Loading catalogs: YAML (anchors and merge keys applied) into raw entries, aliases resolved,
//! then every entry checked against [`Provider`], with every problem reported at once.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, LazyLock};

use serde_json::{Map, Value};
use serde_saphyr::Spanned;

use super::Provider;
use crate::{Error, Result};

// A unit test loads it, so a broken builtin catalog fails the build's tests, not a deployment.
static BUILTIN: LazyLock<Arc<Catalog>> = LazyLock::new(|| {
    Arc::new(
        Catalog::from_yaml(
            "builtin providers.yaml",
            include_str!("../../providers.yaml"),
        )
        .unwrap_or_else(|e| panic!("{e}")),
    )
});

/// A set of providers by name.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    providers: BTreeMap<String, Provider>,
}

impl Catalog {
    /// Lasso's curated catalog (`shared/providers.yaml`, compiled in), parsed once per process.
    pub fn builtin() -> Arc<Catalog> {
        BUILTIN.clone()
    }

    /// A catalog of just the entries in `yaml`; `source` names it in errors.
    pub fn from_yaml(source: &str, yaml: &str) -> Result<Catalog> {
        Catalog::default().merged(source, yaml)
    }

    /// The builtin catalog with the deployment's file at `path` over it: its entries replace
    /// builtin ones of the same name, and its aliases may point at builtin entries.
    pub fn load_extra(path: &Path) -> Result<Catalog> {
        let source = format!("providers file {}", path.display());
        let yaml = std::fs::read_to_string(path)
            .map_err(|e| Error::invalid(&source, format!("cannot read it: {e}")))?;
        Catalog::builtin().merged(&source, &yaml)
    }

    /// This catalog with the entries of `yaml` added over it.
    ///
    /// Aliases follow Nango: an entry `{alias: target, ...}` is the target's entry with the
    /// alias entry's keys replacing the target's top-level keys (a `proxy` given by the alias
    /// replaces the target's whole `proxy`). The target is looked up in `yaml` first, then in
    /// this catalog; an entry aliasing its own name extends this catalog's entry of that name.
    pub fn merged(&self, source: &str, yaml: &str) -> Result<Catalog> {
        let raw = parse_yaml(source, yaml)?;
        let mut providers = self.providers.clone();
        let mut problems = Vec::new();
        for (name, entry) in &raw {
            let line = entry.line;
            let resolved = resolve(name, &raw, self, &mut Vec::new()).and_then(|map| {
                serde_path_to_error::deserialize::<_, Provider>(Value::Object(map)).map_err(|e| {
                    let path = e.path().to_string();
                    if path == "." {
                        e.into_inner().to_string()
                    } else {
                        format!("field `{path}`: {}", e.into_inner())
                    }
                })
            });
            match resolved {
                Ok(provider) => {
                    providers.insert(name.clone(), provider);
                }
                Err(problem) => {
                    problems.push(format!("provider `{name}` (line {line}): {problem}"))
                }
            }
        }
        if problems.is_empty() {
            Ok(Catalog { providers })
        } else {
            Err(Error::invalid(source, problems.join("; ")))
        }
    }

    pub fn get(&self, name: &str) -> Option<&Provider> {
        self.providers.get(name)
    }

    /// The provider `name`, or `unknown_provider` naming it.
    pub fn require(&self, name: &str) -> Result<&Provider> {
        self.get(name).ok_or_else(|| Error::unknown_provider(name))
    }

    /// Every provider, sorted by name.
    pub fn list(&self) -> impl Iterator<Item = (&str, &Provider)> {
        self.providers.iter().map(|(n, p)| (n.as_str(), p))
    }

    /// Providers whose name or display name contains `query`, ignoring case; sorted by name.
    pub fn search<'a>(&'a self, query: &str) -> impl Iterator<Item = (&'a str, &'a Provider)> {
        let query = query.trim().to_lowercase();
        self.list().filter(move |(name, p)| {
            name.to_lowercase().contains(&query) || p.display_name.to_lowercase().contains(&query)
        })
    }

    pub fn len(&self) -> usize {
        self.providers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.providers.is_empty()
    }
}

/// A top-level entry before alias resolution, with the line of its key.
struct RawEntry {
    line: u64,
    value: Value,
}

type RawEntries = BTreeMap<String, RawEntry>;

fn parse_yaml(source: &str, yaml: &str) -> Result<RawEntries> {
    let options = serde_saphyr::options! {
        // js-yaml, which Nango loads its catalog with, reads YAML 1.2: `yes`/`on` are strings.
        strict_booleans: true,
        // One-line errors (they end with the line and column).
        with_snippet: false,
    };
    let parsed: Option<HashMap<Spanned<String>, Value>> =
        serde_saphyr::from_str_with_options(yaml, options)
            .map_err(|e| Error::invalid(source, format!("not a valid catalog: {e}")))?;
    Ok(parsed
        .unwrap_or_default()
        .into_iter()
        .map(|(key, value)| {
            let line = key.referenced.line();
            (key.value, RawEntry { line, value })
        })
        .collect())
}

/// The entry `name` with its alias (if any) applied, as a JSON map. `seen` holds the aliases
/// being followed, to report cycles.
fn resolve(
    name: &str,
    raw: &RawEntries,
    base: &Catalog,
    seen: &mut Vec<String>,
) -> Result<Map<String, Value>, String> {
    let Value::Object(entry) = &raw[name].value else {
        return Err("expected a mapping of provider fields".to_string());
    };
    let Some(alias) = entry.get("alias") else {
        return Ok(entry.clone());
    };
    let target = alias
        .as_str()
        .ok_or("field `alias`: expected the name of another provider")?;
    let mut resolved = if target != name && raw.contains_key(target) {
        seen.push(name.to_string());
        if seen.iter().any(|s| s == target) {
            return Err(format!(
                "field `alias`: aliases form a cycle: {} -> {target}",
                seen.join(" -> ")
            ));
        }
        resolve(target, raw, base, seen)
            .map_err(|e| format!("field `alias`: its target `{target}` is invalid: {e}"))?
    } else if let Some(provider) = base.get(target) {
        match serde_json::to_value(provider) {
            Ok(Value::Object(map)) => map,
            _ => return Err(format!("field `alias`: cannot copy `{target}`")),
        }
    } else {
        return Err(format!("field `alias`: no provider named `{target}`"));
    };
    for (key, value) in entry {
        if key != "alias" {
            resolved.insert(key.clone(), value.clone());
        }
    }
    Ok(resolved)
}
