//! CommonJS files of packages in the project's `node_modules`, made into ES modules the sandbox
//! loads like any other bundle module.
//!
//! Each file becomes a module exporting `__lasso_load()`, which runs the file's source once,
//! in Node's wrapper function (`exports, require, module, __filename, __dirname`), when it is
//! first required, as Node does (so cycles see a partial `exports`, and a `require` inside a
//! function that never runs loads nothing). Every `require("…")` with a literal name is
//! resolved at compile time; the module imports what those name up front and `require` hands
//! them out by name. An ES module that imports a CommonJS one imports its facade: a module that
//! loads it at once and exports `default` (`module.exports`, or its `default` when it sets
//! `__esModule`, as esbuild and `nango`'s own build give it) and the names importers use.
//!
//! The source is not rewritten, so its lines and columns stay its own, and it runs in strict
//! mode (it is inside an ES module).

use std::collections::BTreeSet;

use oxc::ast::ast::{Argument, CallExpression, Expression, Program, TryStatement};
use oxc::ast_visit::{Visit, walk};
use oxc::span::Span;

/// What kind of module a bundled file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Esm,
    CommonJs,
    Json,
}

/// A `require("name")` call with a literal name.
pub(crate) struct Required {
    pub specifier: String,
    pub span: Span,
    /// Inside a `try` block: a package probing for an optional module, so one that cannot be
    /// bundled throws when required (as a missing module does in Node) instead of failing the
    /// compile.
    pub in_try: bool,
}

/// The literal `require` calls of a CommonJS program.
pub(crate) fn requires(program: &Program<'_>) -> Vec<Required> {
    let mut finder = Finder {
        found: Vec::new(),
        try_depth: 0,
    };
    finder.visit_program(program);
    finder.found
}

struct Finder {
    found: Vec<Required>,
    try_depth: u32,
}

impl<'a> Visit<'a> for Finder {
    fn visit_call_expression(&mut self, it: &CallExpression<'a>) {
        if let (Expression::Identifier(callee), [argument]) = (&it.callee, it.arguments.as_slice())
            && callee.name == "require"
        {
            let literal = match argument {
                Argument::StringLiteral(s) => Some((s.value.to_string(), s.span)),
                Argument::TemplateLiteral(t) if t.expressions.is_empty() => t
                    .quasis
                    .first()
                    .and_then(|q| q.value.cooked.as_ref())
                    .map(|c| (c.to_string(), t.span)),
                _ => None,
            };
            if let Some((specifier, span)) = literal {
                self.found.push(Required {
                    specifier,
                    span,
                    in_try: self.try_depth > 0,
                });
            }
        }
        walk::walk_call_expression(self, it);
    }

    fn visit_try_statement(&mut self, it: &TryStatement<'a>) {
        self.try_depth += 1;
        self.visit_block_statement(&it.block);
        self.try_depth -= 1;
        if let Some(handler) = &it.handler {
            self.visit_catch_clause(handler);
        }
        if let Some(finalizer) = &it.finalizer {
            self.visit_block_statement(finalizer);
        }
    }
}

/// What one required name gives.
pub(crate) enum Dep {
    /// A bundled file of `node_modules` (by bundle key) and its kind.
    Bundled(String, Kind),
    /// A Node module Lasso provides: `require` gives the module object.
    Node,
    /// `nango` or a package Lasso provides (zod): `require` gives its exports, `__esModule` set.
    Provided,
    /// Cannot be bundled (required inside a `try`): `require` throws this, as Node's does.
    Missing(String),
}

fn quote(s: &str) -> String {
    serde_json::to_string(s).expect("a string serializes")
}

/// The ES module that runs `source` (CommonJS, bundle key `key`) when first required.
/// Everything added before the source stays on its first line, so line numbers in stacks are
/// the source's own.
pub(crate) fn wrap(key: &str, file: &str, source: &str, deps: &[(String, Dep)]) -> String {
    let mut head = String::new();
    let mut table = String::new();
    for (i, (specifier, dep)) in deps.iter().enumerate() {
        let name = quote(specifier);
        let load = match dep {
            Dep::Bundled(target, kind) => {
                head.push_str(&format!(
                    "import * as __lasso_d{i} from {}; ",
                    quote(target)
                ));
                match kind {
                    Kind::CommonJs => format!("__lasso_d{i}.__lasso_load()"),
                    Kind::Json => format!("__lasso_d{i}.default"),
                    Kind::Esm => format!("__lasso_esm(__lasso_d{i})"),
                }
            }
            Dep::Node => {
                head.push_str(&format!("import * as __lasso_d{i} from {name}; "));
                format!("__lasso_d{i}.default")
            }
            Dep::Provided => {
                head.push_str(&format!("import * as __lasso_d{i} from {name}; "));
                format!("__lasso_esm(__lasso_d{i})")
            }
            Dep::Missing(message) => {
                format!("__lasso_missing({name}, {})", quote(message))
            }
        };
        table.push_str(&format!("{name}: () => {load}, "));
    }
    let quoted_file = quote(file);
    let dir = quote(file.rsplit_once('/').map_or("", |(dir, _)| dir));
    let quoted_key = quote(key);
    // A hashbang is only valid as a file's first line.
    let source = match source.strip_prefix("#!") {
        Some(rest) => format!("//{rest}"),
        None => source.to_string(),
    };
    format!(
        "{head}var __lasso_m; \
         const __lasso_esm = (n) => Object.defineProperty(Object.assign({{}}, n), '__esModule', {{ value: true }}); \
         const __lasso_missing = (s, why) => {{ const e = new Error(`Cannot find module '${{s}}' from ${{{quoted_file}}}: ${{why}}`); e.code = 'MODULE_NOT_FOUND'; throw e; }}; \
         export function __lasso_load() {{ \
         if (__lasso_m) return __lasso_m.exports; \
         const __lasso_t = {{ {table}}}; \
         const module = __lasso_m = {{ exports: {{}}, id: {quoted_key}, filename: {quoted_file}, loaded: false, children: [] }}; \
         const require = (s) => Object.prototype.hasOwnProperty.call(__lasso_t, s) ? __lasso_t[s]() \
         : __lasso_missing(String(s), 'Lasso bundles what a package requires by a literal name at compile time'); \
         (function (exports, require, module, __filename, __dirname) {{{source}\n}})\
         .call(module.exports, module.exports, require, module, {quoted_file}, {dir}); \
         module.loaded = true; return module.exports; }}\n"
    )
}

/// The ES module an ES module imports a CommonJS module (bundle key `key`) through: it loads it
/// and exports `default`, `names` and `__lasso_ns` (a namespace-like object of every property).
pub(crate) fn facade(key: &str, names: &BTreeSet<String>) -> String {
    let mut out = format!(
        "import {{ __lasso_load }} from {};\n\
         const __lasso_e = __lasso_load();\n\
         const __lasso_n = __lasso_e == null ? {{}} : __lasso_e;\n\
         const __lasso_d = __lasso_n.__esModule ? __lasso_n.default : __lasso_e;\n\
         export default __lasso_d;\n",
        quote(key)
    );
    for (i, name) in names.iter().enumerate() {
        let exported = if is_identifier(name) {
            name.clone()
        } else {
            quote(name)
        };
        out.push_str(&format!(
            "const __lasso_v{i} = __lasso_n[{}];\nexport {{ __lasso_v{i} as {exported} }};\n",
            quote(name)
        ));
    }
    out
}

/// The bundle key of the facade of the CommonJS module keyed `key`.
pub(crate) fn facade_key(key: &str) -> String {
    format!("{key}+esm.js")
}

/// A JSON file as an ES module whose default export is its value.
pub(crate) fn json_module(text: &str) -> String {
    format!("export default {};\n", text.trim())
}

fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == '$')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
}

#[cfg(test)]
mod tests {
    use super::*;
    use oxc::allocator::Allocator;
    use oxc::parser::Parser;
    use oxc::span::SourceType;

    #[test]
    fn finds_literal_requires_and_whether_they_are_tried() {
        let source = "const a = require('./a');\ntry { require(`opt`); } catch { require('c'); }\nrequire(name); x.require('no');";
        let allocator = Allocator::default();
        let parsed = Parser::new(&allocator, source, SourceType::cjs()).parse();
        let found: Vec<(String, bool)> = requires(&parsed.program)
            .into_iter()
            .map(|r| (r.specifier, r.in_try))
            .collect();
        assert_eq!(
            found,
            vec![
                ("./a".into(), false),
                ("opt".into(), true),
                ("c".into(), false)
            ]
        );
    }

    #[test]
    fn the_wrapper_keeps_the_source_lines() {
        let wrapped = wrap(
            "node_modules/p/i.js",
            "node_modules/p/i.js",
            "#!/usr/bin/env node\nmodule.exports = 1;",
            &[(
                "./a".into(),
                Dep::Bundled("node_modules/p/a.js".into(), Kind::CommonJs),
            )],
        );
        let second = wrapped.lines().nth(1);
        assert_eq!(second, Some("module.exports = 1;"));
        assert!(wrapped.starts_with("import * as __lasso_d0 from \"node_modules/p/a.js\"; "));
    }
}
