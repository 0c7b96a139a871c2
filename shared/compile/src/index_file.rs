//! Nango's zero-yaml way of listing a project's functions: the root `index.ts` imports each
//! one (`import './github/syncs/issues.js';`). Without an `index.ts` the compiler falls back
//! to the `<integration>/syncs|actions|on-events/` layout.

use std::path::Path;

use oxc::allocator::Allocator;
use oxc::ast::ast::Statement;
use oxc::parser::Parser;
use oxc::span::SourceType;

use lasso_core::scripts::{Diagnostic, FunctionType};

const INDEX: &str = "index.ts";

/// `(integration, kind, name, file)`.
pub(crate) type Found = (String, FunctionType, String, String);

/// Every script `index.ts` imports, in its order; `None`
/// without an `index.ts`. The kind is the one its folder suggests, for messages until the
/// script is evaluated: what it exports decides.
pub(crate) fn functions(root: &Path) -> Option<Result<Vec<Found>, Diagnostic>> {
    let text = std::fs::read_to_string(root.join(INDEX)).ok()?;
    let problem = |message: String| Diagnostic {
        file: INDEX.into(),
        line: 0,
        column: 0,
        message,
    };
    let allocator = Allocator::default();
    let parsed = Parser::new(&allocator, &text, SourceType::ts().with_module(true)).parse();
    if let Some(e) = parsed.diagnostics.first() {
        return Some(Err(problem(format!("cannot parse: {e}"))));
    }
    let mut found = Vec::new();
    for statement in &parsed.program.body {
        let source = match statement {
            Statement::ImportDeclaration(i) if i.import_kind.is_value() => &i.source,
            Statement::ExportAllDeclaration(e) => &e.source,
            Statement::ExportFromDeclaration(e) => &e.source,
            _ => continue,
        };
        let specifier = source.value.as_str();
        let Some(relative) = specifier.strip_prefix("./") else {
            continue;
        };
        let stem = relative
            .strip_suffix(".js")
            .or_else(|| relative.strip_suffix(".ts"))
            .unwrap_or(relative);
        let file = [format!("{stem}.ts"), format!("{stem}.js")]
            .into_iter()
            .find(|f| root.join(f).is_file());
        let Some(file) = file else {
            return Some(Err(problem(format!(
                "imports `{specifier}`, which does not exist"
            ))));
        };
        let segments: Vec<&str> = stem.split('/').collect();
        let (Some(integration), Some(name)) = (segments.first(), segments.last()) else {
            continue;
        };
        if segments.len() < 2 {
            return Some(Err(problem(format!(
                "imports `{specifier}`: a function lives in an integration folder (`<integration>/syncs/<name>.ts`)"
            ))));
        }
        let kind = segments
            .iter()
            .find_map(|s| match *s {
                "syncs" => Some(FunctionType::Sync),
                "actions" => Some(FunctionType::Action),
                "on-events" => Some(FunctionType::OnEvent),
                _ => None,
            })
            .unwrap_or(FunctionType::Action);
        found.push((integration.to_string(), kind, name.to_string(), file));
    }
    Some(Ok(found))
}
