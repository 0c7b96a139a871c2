//! CommonJS modules (a bundle key ending in `.cjs`): what the `nango` CLI deploys, esbuild's
//! CommonJS output of one script, which does `require("zod")`. QuickJS only loads ES modules,
//! so such a module is loaded as an ES module that imports, up front, every module the source
//! names in a `require("…")` call that Lasso provides, and runs the source in a function with
//! Node's `exports, require, module, __filename, __dirname`. Its default export is what Node's
//! `import()` of it would give as `default.default` (esbuild's `export default`), or
//! `module.exports` itself.
//!
//! `require` only ever hands out those imported modules: a name the source builds at run time,
//! or a module Lasso does not provide, throws naming it.

use std::collections::BTreeSet;

/// What kind of module a `require`d name is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Node,
    Package,
}

/// The ES module source that runs `source` (CommonJS) as module `name`. Everything added
/// before the source stays on its first line, so line numbers in stacks are the source's own.
///
/// `provided` says whether Lasso provides a module: `Some(Kind::Node)` for a Node built-in
/// (whose `require` gives the module object, its default export, as Node's does), `Some(Kind::
/// Package)` for zod or the SDK (whose `require` gives its exports with `__esModule`, as the
/// CommonJS build of an npm package does), `None` otherwise.
pub fn wrap(name: &str, source: &str, provided: impl Fn(&str) -> Option<Kind>) -> String {
    let required = required_names(source);
    let mut head = String::new();
    let mut table = String::from("{");
    let known = required.iter().filter_map(|s| Some((s, provided(s)?)));
    for (i, (specifier, kind)) in known.enumerate() {
        let quoted = serde_json::to_string(specifier).expect("a string serializes");
        head.push_str(&format!("import * as __lasso_cjs{i} from {quoted}; "));
        let node = kind == Kind::Node;
        table.push_str(&format!("{quoted}: [__lasso_cjs{i}, {node}], "));
    }
    table.push('}');
    let quoted_name = serde_json::to_string(name).expect("a string serializes");
    let dir = name.rsplit_once('/').map_or("", |(dir, _)| dir);
    let quoted_dir = serde_json::to_string(dir).expect("a string serializes");
    format!(
        "{head}const __lasso_cjs = globalThis.__lassoCommonJs({quoted_name}, {table}); \
         (function (exports, require, module, __filename, __dirname) {{{source}\n}})\
         .call(__lasso_cjs.module.exports, __lasso_cjs.module.exports, __lasso_cjs.require, \
         __lasso_cjs.module, {quoted_name}, {quoted_dir});\n\
         export default __lasso_cjs.entry();\n"
    )
}

/// The string literals passed to `require(…)` in `source`. A mention inside a comment or a
/// string is picked up too; that only imports a module the code then does not use.
fn required_names(source: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = source;
    while let Some(at) = rest.find("require(") {
        let before = rest[..at].chars().next_back();
        rest = &rest[at + "require(".len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$' || c == '.') {
            continue;
        }
        let trimmed = rest.trim_start();
        let Some(quote) = trimmed
            .chars()
            .next()
            .filter(|c| matches!(c, '"' | '\'' | '`'))
        else {
            continue;
        };
        let body = &trimmed[1..];
        let Some(end) = body.find(quote) else {
            continue;
        };
        let name = &body[..end];
        if !name.is_empty() && !name.contains(['\\', '\n', '$']) {
            names.insert(name.to_string());
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_required_names() {
        let names = required_names(
            "var a = require(\"zod\");\nvar b = require( 'node:crypto' );\nx.require('no');\nrequire(name);",
        );
        assert_eq!(
            names.into_iter().collect::<Vec<_>>(),
            vec!["node:crypto".to_string(), "zod".to_string()]
        );
    }

    #[test]
    fn imports_only_what_is_provided_and_keeps_line_numbers() {
        let wrapped = wrap(
            "a/syncs/b.cjs",
            "require(\"zod\");\nrequire(\"left-pad\");",
            |s| (s == "zod").then_some(Kind::Package),
        );
        assert!(wrapped.starts_with("import * as __lasso_cjs0 from \"zod\"; "));
        assert!(!wrapped.contains("from \"left-pad\""));
        assert_eq!(wrapped.lines().nth(1), Some("require(\"left-pad\");"));
    }
}
