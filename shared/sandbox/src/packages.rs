//! The npm packages Lasso provides to scripts (zod), as Nango's runner does: embedded at build
//! time from `sandbox-js/node_modules` (pinned by its lockfile, installed by
//! `scripts/bootstrap`), loaded into a context only when a module imports them, from bytecode
//! compiled once per process. Each context evaluates its own copy, so no two runs share one.

/// One provided package.
pub struct Package {
    pub name: &'static str,
    pub version: &'static str,
    /// Bare specifier (`zod`, `zod/v4`) -> file, from the package's `exports`.
    pub entries: &'static [(&'static str, &'static str)],
    /// `zod/v4/core/index.js` -> source.
    pub files: &'static [(&'static str, &'static str)],
}

include!(concat!(env!("OUT_DIR"), "/js_packages.rs"));

/// Module names of package files start with this, which no bundle key does (keys are
/// project-relative paths without `:`).
pub const PREFIX: &str = "lasso:npm/";

/// The command that installs the packages before a build.
pub const SETUP: &str = "scripts/bootstrap (npm ci in sandbox-js/), then rebuild";

/// The package a bare specifier names: `zod/v4` -> `zod`, `@scope/pkg/x` -> `@scope/pkg`.
pub fn package_name(specifier: &str) -> &str {
    let mut parts = specifier.splitn(3, '/');
    let first = parts.next().unwrap_or("");
    match (first.starts_with('@'), parts.next()) {
        (true, Some(second)) => &specifier[..first.len() + 1 + second.len()],
        _ => first,
    }
}

/// Whether Lasso provides the package `specifier` belongs to (installed in this build or not).
pub fn is_provided(specifier: &str) -> bool {
    let name = package_name(specifier);
    PACKAGES.iter().any(|p| p.name == name) || MISSING.contains(&name)
}

/// The module name of a bare `specifier`, or why it cannot be loaded.
pub fn resolve_bare(specifier: &str) -> Result<String, String> {
    let name = package_name(specifier);
    if MISSING.contains(&name) {
        return Err(format!(
            "the `{name}` package Lasso provides is not installed in this build: run {SETUP}"
        ));
    }
    let package = PACKAGES
        .iter()
        .find(|p| p.name == name)
        .ok_or_else(|| format!("`{name}` is not a package Lasso provides"))?;
    package
        .entries
        .iter()
        .find(|(s, _)| *s == specifier)
        .map(|(_, file)| format!("{PREFIX}{file}"))
        .ok_or_else(|| {
            format!(
                "`{specifier}` is not an entry point of {name}@{} (it has {})",
                package.version,
                package
                    .entries
                    .iter()
                    .map(|(s, _)| *s)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
}

/// A relative import inside a package file (`base` is a module name with [`PREFIX`]).
pub fn resolve_relative(base: &str, specifier: &str) -> Option<String> {
    let dir = base.strip_prefix(PREFIX)?.rsplit_once('/')?.0;
    let mut parts: Vec<&str> = dir.split('/').collect();
    for part in specifier.split('/') {
        match part {
            "." | "" => {}
            ".." => {
                parts.pop()?;
            }
            p => parts.push(p),
        }
    }
    let path = parts.join("/");
    source(&format!("{PREFIX}{path}")).map(|_| format!("{PREFIX}{path}"))
}

/// The source of a package module by its module name.
pub fn source(module: &str) -> Option<(&'static str, &'static str)> {
    let path = module.strip_prefix(PREFIX)?;
    PACKAGES
        .iter()
        .flat_map(|p| p.files.iter())
        .find(|(name, _)| *name == path)
        .copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_names_of_specifiers() {
        assert_eq!(package_name("zod"), "zod");
        assert_eq!(package_name("zod/v4/core"), "zod");
        assert_eq!(package_name("@scope/pkg/x"), "@scope/pkg");
        assert_eq!(package_name("@scope/pkg"), "@scope/pkg");
    }

    #[test]
    fn zod_resolves_to_its_entry_and_relative_files() {
        let entry = resolve_bare("zod").expect("zod is installed for the tests");
        assert_eq!(entry, "lasso:npm/zod/index.js");
        assert_eq!(
            resolve_relative(&entry, "./v4/classic/external.js").as_deref(),
            Some("lasso:npm/zod/v4/classic/external.js")
        );
        assert!(resolve_relative(&entry, "../../etc/passwd").is_none());
        assert!(
            resolve_bare("zod/nope")
                .unwrap_err()
                .contains("not an entry point")
        );
    }
}
