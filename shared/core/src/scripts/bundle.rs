//! The bundle of one function: every JavaScript module its entry reaches, keyed by
//! project-relative path, with a source map per module. Imports inside the modules name other
//! keys of `modules` (or `nango`, the SDK), so a sandbox resolves them without a filesystem.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The version of the bundle document; bumped when its shape changes.
pub const BUNDLE_FORMAT: u32 = 1;

/// `{"format": 1, "entry": "github/syncs/issues.js", "modules": {...}, "source_maps": {...}}`.
/// Maps are ordered, so the same modules always serialize to the same bytes (and hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bundle {
    pub format: u32,
    /// The key of the module whose default export is the function.
    pub entry: String,
    /// Bundle key (`<project-relative path>.js`) -> JavaScript source of an ES module.
    pub modules: BTreeMap<String, String>,
    /// Bundle key -> source map (JSON text, version 3) back to the TypeScript file.
    #[serde(default)]
    pub source_maps: BTreeMap<String, String>,
}

/// The SDK module scripts import their helpers from.
pub const SDK_MODULE: &str = "nango";

impl Bundle {
    /// The document as stored and hashed.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a bundle serializes")
    }

    /// Parses and checks a bundle document: the format, that the entry is one of the modules,
    /// and that every key is a relative `.js` path.
    pub fn parse(json: &str) -> Result<Self, String> {
        let bundle: Bundle =
            serde_json::from_str(json).map_err(|e| format!("not a bundle document: {e}"))?;
        if bundle.format != BUNDLE_FORMAT {
            return Err(format!(
                "bundle format {} is not supported (expected {BUNDLE_FORMAT})",
                bundle.format
            ));
        }
        if !bundle.modules.contains_key(&bundle.entry) {
            return Err(format!(
                "entry `{}` is not one of the modules",
                bundle.entry
            ));
        }
        for key in bundle.modules.keys().chain(bundle.source_maps.keys()) {
            if !is_module_key(key) {
                return Err(format!("`{key}` is not a relative `.js` module path"));
            }
        }
        if let Some(key) = bundle
            .source_maps
            .keys()
            .find(|k| !bundle.modules.contains_key(*k))
        {
            return Err(format!("source map `{key}` has no module"));
        }
        Ok(bundle)
    }

    /// Rewrites the `<module key>:<line>:<column>` positions of a JavaScript stack trace to the
    /// TypeScript positions the source maps point at (`github/syncs/issues.ts:12:7`). Positions
    /// the maps do not cover stay as they are.
    pub fn remap_stack(&self, stack: &str) -> String {
        let maps: BTreeMap<&str, oxc_sourcemap::SourceMap> = self
            .source_maps
            .iter()
            .filter_map(|(key, json)| {
                oxc_sourcemap::SourceMap::from_json_string(json)
                    .ok()
                    .map(|m| (key.as_str(), m))
            })
            .collect();
        let mut out = String::with_capacity(stack.len());
        for (i, line) in stack.split('\n').enumerate() {
            if i > 0 {
                out.push('\n');
            }
            out.push_str(&remap_line(line, &maps));
        }
        out
    }
}

/// Replaces the first `key:line:col` of `line` whose key has a source map.
fn remap_line(line: &str, maps: &BTreeMap<&str, oxc_sourcemap::SourceMap>) -> String {
    for (key, map) in maps {
        let Some(at) = line.find(&format!("{key}:")) else {
            continue;
        };
        let rest = &line[at + key.len() + 1..];
        let digits = |s: &str| s.bytes().take_while(u8::is_ascii_digit).count();
        let line_len = digits(rest);
        if line_len == 0 || !rest[line_len..].starts_with(':') {
            continue;
        }
        let col_len = digits(&rest[line_len + 1..]);
        let (Ok(js_line), Ok(js_col)) = (
            rest[..line_len].parse::<u32>(),
            rest[line_len + 1..line_len + 1 + col_len].parse::<u32>(),
        ) else {
            continue;
        };
        // Stack positions are 1-based; source maps count from 0.
        let table = map.generate_lookup_table();
        let Some(token) =
            map.lookup_token(&table, js_line.saturating_sub(1), js_col.saturating_sub(1))
        else {
            continue;
        };
        let Some(source) = token.get_source_id().and_then(|id| map.get_source(id)) else {
            continue;
        };
        let end = at + key.len() + 1 + line_len + 1 + col_len;
        return format!(
            "{}{source}:{}:{}{}",
            &line[..at],
            token.get_src_line() + 1,
            token.get_src_col() + 1,
            &line[end..]
        );
    }
    line.to_string()
}

fn is_module_key(key: &str) -> bool {
    key.ends_with(".js")
        && !key.starts_with('/')
        && key
            .split('/')
            .all(|seg| !seg.is_empty() && seg != "." && seg != "..")
}

/// Lowercase hex SHA-256 of the bundle bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The script-store key of a bundle: its content hash, so the same bundle is stored once.
pub fn store_key(sha256_hex: &str) -> String {
    format!("bundles/{sha256_hex}.json")
}
