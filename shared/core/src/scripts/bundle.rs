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
    /// Bundle key (`<project-relative path>.js`) -> JavaScript source of an ES module, or
    /// (`.cjs`) of a CommonJS module, as the `nango` CLI deploys them.
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
                return Err(format!(
                    "`{key}` is not a relative `.js` or `.cjs` module path"
                ));
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
}

fn is_module_key(key: &str) -> bool {
    // `.cjs`: a CommonJS module, as the `nango` CLI bundles a script.
    (key.ends_with(".js") || key.ends_with(".cjs"))
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
