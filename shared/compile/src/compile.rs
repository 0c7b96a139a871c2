//! Compiling a project: find its functions (from `nango.yaml` and the object form), strip the
//! TypeScript of every module an entry reaches with oxc, rewrite relative imports to bundle
//! keys, and put each function's modules and source maps into a [`Bundle`]. Every problem is
//! collected with its file, line and column; one problem anywhere fails the whole project.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Component, Path, PathBuf};

use oxc::allocator::{Allocator, FromIn};
use oxc::ast::ast::{
    ComputedMemberExpression, Expression, ImportDeclarationSpecifier, Program, Statement,
    StaticMemberExpression, StringLiteral,
};
use oxc::ast_visit::{VisitMut, walk_mut};
use oxc::codegen::{Codegen, CodegenOptions};
use oxc::diagnostics::{OxcDiagnostic, Severity};
use oxc::parser::Parser;
use oxc::semantic::SemanticBuilder;
use oxc::span::{SourceType, Span};
use oxc::str::Str;
use oxc::transformer::{TransformOptions, Transformer};

use lasso_core::scripts::{
    BUNDLE_FORMAT, Bundle, CompiledFunction, CompiledProject, Diagnostic, FunctionConfig,
    FunctionType, SDK_MODULE,
};
use lasso_core::{Error, Result};
use lasso_sandbox as sandbox;

use crate::commonjs::{self, Dep, Kind};
use crate::node_modules::{self, Style};
use crate::{evaluate, index_file, yaml};

/// The config file of a project, at its root.
const CONFIG_FILE: &str = "nango.yaml";

/// Folders at the root that never hold integrations.
const SKIPPED_DIRS: [&str; 4] = ["node_modules", "dist", "build", "build_output"];

/// QuickJS-ng runs ES2023; syntax newer than ES2022 is lowered to be safe.
const TARGET: &str = "es2022";

/// Compiles the project in `dir`. Problems come back as [`Error::Compile`], every one of them,
/// sorted by file and line.
pub fn compile(dir: &Path) -> Result<CompiledProject> {
    let root = dir.canonicalize().map_err(|e| {
        Error::Compile(vec![Diagnostic {
            file: dir.display().to_string(),
            line: 0,
            column: 0,
            message: format!("cannot open the project directory: {e}"),
        }])
    })?;
    let mut c = Compiler {
        root,
        diagnostics: Vec::new(),
        modules: HashMap::new(),
        kinds: HashMap::new(),
    };
    let entries = c.find_functions();
    let mut functions = Vec::new();
    for entry in entries {
        if let Some(f) = c.build_function(entry) {
            functions.push(f);
        }
    }
    c.check_models_unique(&functions);
    if !c.diagnostics.is_empty() {
        let mut d = c.diagnostics;
        d.sort_by(|a, b| (&a.file, a.line, a.column).cmp(&(&b.file, b.line, b.column)));
        d.dedup();
        return Err(Error::Compile(d));
    }
    functions.sort_by(|a, b| {
        (&a.integration, a.function_type(), &a.name).cmp(&(
            &b.integration,
            b.function_type(),
            &b.name,
        ))
    });
    Ok(CompiledProject { functions })
}

/// A function to build: its script and, when `nango.yaml` configures it, that configuration.
struct Entry {
    integration: String,
    name: String,
    kind: FunctionType,
    file: String,
    yaml: Option<FunctionConfig>,
}

/// One compiled module, cached: several functions share helpers.
struct Module {
    js: String,
    source_map: String,
    /// Project-relative paths of the modules it imports.
    deps: Vec<String>,
    has_default_export: bool,
    /// The CommonJS modules it imports through their facades, with the names it uses.
    facades: Vec<(String, BTreeSet<String>)>,
}

struct Compiler {
    root: PathBuf,
    diagnostics: Vec<Diagnostic>,
    /// `None` when the module failed (its problems are already recorded).
    modules: HashMap<String, Option<Module>>,
    kinds: HashMap<String, Kind>,
}

impl Compiler {
    fn error(&mut self, file: &str, line: u32, column: u32, message: impl Into<String>) {
        self.diagnostics.push(Diagnostic {
            file: file.to_string(),
            line,
            column,
            message: message.into(),
        });
    }

    /// The functions of the project: those `nango.yaml` names, then every script under
    /// `<integration>/{syncs,actions,on-events}/` it does not name (their configuration is in
    /// the script).
    fn find_functions(&mut self) -> Vec<Entry> {
        let mut entries = Vec::new();
        let config_path = self.root.join(CONFIG_FILE);
        let mut claimed = BTreeSet::new();
        if config_path.is_file() {
            match std::fs::read_to_string(&config_path) {
                Err(e) => {
                    self.error(CONFIG_FILE, 0, 0, format!("cannot read: {e}"));
                    return entries;
                }
                Ok(text) => match yaml::parse(CONFIG_FILE, &text) {
                    Err(diagnostics) => {
                        // Without the config, which scripts it covers is unknown: report
                        // only its problems.
                        self.diagnostics.extend(diagnostics);
                        return entries;
                    }
                    Ok(functions) => {
                        for f in functions {
                            let kind = f.config.function_type();
                            let Some(file) = self.script_path(&f.integration, kind, &f.name) else {
                                self.error(
                                    CONFIG_FILE,
                                    f.line,
                                    f.column,
                                    format!(
                                        "{kind} `{}`: its script `{}/{}/{}.ts` does not exist",
                                        f.name,
                                        f.integration,
                                        kind.folder(),
                                        f.name
                                    ),
                                );
                                continue;
                            };
                            claimed.insert(file.clone());
                            entries.push(Entry {
                                integration: f.integration,
                                name: f.name,
                                kind,
                                file,
                                yaml: Some(f.config),
                            });
                        }
                    }
                },
            }
        }
        let found = match index_file::functions(&self.root) {
            Some(Ok(found)) => found,
            Some(Err(d)) => {
                self.diagnostics.push(d);
                return entries;
            }
            None => self.discover_scripts(),
        };
        for (integration, kind, name, file) in found {
            if claimed.contains(&file) {
                continue;
            }
            if let Err(e) = lasso_core::integrations::check_unique_key(&integration, "integration")
            {
                self.error(
                    &file,
                    0,
                    0,
                    format!("integration folder `{integration}`: {e}"),
                );
                continue;
            }
            if let Err(e) = lasso_core::scripts::check_function_name(&name) {
                self.error(&file, 0, 0, e);
                continue;
            }
            entries.push(Entry {
                integration,
                name,
                kind,
                file,
                yaml: None,
            });
        }
        entries
    }

    /// `<integration>/<folder>/<name>.ts` (Nango's nested layout), else `<name>.ts` at the root
    /// (its older flat layout); `.js` where there is no `.ts`.
    fn script_path(&self, integration: &str, kind: FunctionType, name: &str) -> Option<String> {
        [
            format!("{integration}/{}/{name}.ts", kind.folder()),
            format!("{integration}/{}/{name}.js", kind.folder()),
            format!("{name}.ts"),
            format!("{name}.js"),
        ]
        .into_iter()
        .find(|p| self.root.join(p).is_file())
    }

    /// Every `<integration>/<folder>/<name>.{ts,js}`, sorted.
    fn discover_scripts(&self) -> Vec<(String, FunctionType, String, String)> {
        let mut found = Vec::new();
        let Ok(dirs) = std::fs::read_dir(&self.root) else {
            return found;
        };
        for dir in dirs.flatten() {
            let integration = dir.file_name().to_string_lossy().into_owned();
            if integration.starts_with('.')
                || SKIPPED_DIRS.contains(&integration.as_str())
                || !dir.path().is_dir()
            {
                continue;
            }
            for kind in [
                FunctionType::Sync,
                FunctionType::Action,
                FunctionType::OnEvent,
            ] {
                let Ok(files) = std::fs::read_dir(dir.path().join(kind.folder())) else {
                    continue;
                };
                for file in files.flatten() {
                    let file_name = file.file_name().to_string_lossy().into_owned();
                    let stem = file_name
                        .strip_suffix(".ts")
                        .or_else(|| file_name.strip_suffix(".js"));
                    let Some(stem) = stem.filter(|s| !s.ends_with(".d") && !s.ends_with(".test"))
                    else {
                        continue;
                    };
                    if !file.path().is_file() {
                        continue;
                    }
                    found.push((
                        integration.clone(),
                        kind,
                        stem.to_string(),
                        format!("{integration}/{}/{file_name}", kind.folder()),
                    ));
                }
            }
        }
        found.sort();
        found
    }

    fn build_function(&mut self, entry: Entry) -> Option<CompiledFunction> {
        let file = entry.file.clone();
        let reachable = self.compile_graph(&file)?;
        let has_default_export = self.modules.get(&file)?.as_ref()?.has_default_export;
        if !has_default_export {
            self.error(
                &file,
                1,
                1,
                format!(
                    "{} `{}` has no default export (write `export default {}({{...}})` or `export default async function`)",
                    entry.kind,
                    entry.name,
                    create(entry.kind)
                ),
            );
            return None;
        }
        let mut bundle = Bundle {
            format: BUNDLE_FORMAT,
            entry: bundle_key(&file),
            modules: BTreeMap::new(),
            source_maps: BTreeMap::new(),
        };
        let mut facades: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for path in reachable {
            let module = self.modules.get(&path)?.as_ref()?;
            bundle.modules.insert(bundle_key(&path), module.js.clone());
            if !module.source_map.is_empty() {
                bundle
                    .source_maps
                    .insert(bundle_key(&path), module.source_map.clone());
            }
            for (target, names) in &module.facades {
                facades
                    .entry(bundle_key(target))
                    .or_default()
                    .extend(names.iter().cloned());
            }
        }
        // Each function's facade exports the names its own modules use.
        for (key, names) in facades {
            bundle
                .modules
                .insert(commonjs::facade_key(&key), commonjs::facade(&key, &names));
        }
        // nango.yaml's configuration wins; otherwise the script's, read by running it.
        let config = match entry.yaml {
            Some(config) => config,
            None => {
                match evaluate::block_on(evaluate::read(&bundle, &entry.integration, &entry.name)) {
                    Ok(Some((_, config))) => config,
                    Ok(None) => {
                        self.error(
                        &file,
                        1,
                        1,
                        format!(
                            "{} `{}` has no configuration: list it under `integrations.{}.{}` in nango.yaml, or export `{}({{...}})`",
                            entry.kind,
                            entry.name,
                            entry.integration,
                            entry.kind.folder(),
                            create(entry.kind),
                        ),
                    );
                        return None;
                    }
                    Err(problems) => {
                        for problem in problems {
                            self.error(&file, 1, 1, problem);
                        }
                        return None;
                    }
                }
            }
        };
        Some(CompiledFunction {
            integration: entry.integration,
            name: entry.name,
            file,
            config,
            bundle: bundle.to_json(),
        })
    }

    /// Compiles `entry` and every module it reaches; `None` when any of them failed.
    fn compile_graph(&mut self, entry: &str) -> Option<BTreeSet<String>> {
        let mut seen = BTreeSet::new();
        let mut queue = vec![entry.to_string()];
        let mut ok = true;
        while let Some(path) = queue.pop() {
            if !seen.insert(path.clone()) {
                continue;
            }
            if !self.modules.contains_key(&path) {
                let module = self.compile_module(&path);
                self.modules.insert(path.clone(), module);
            }
            match &self.modules[&path] {
                Some(module) => queue.extend(module.deps.iter().cloned()),
                None => ok = false,
            }
        }
        ok.then_some(seen)
    }

    fn compile_module(&mut self, path: &str) -> Option<Module> {
        let text = match std::fs::read_to_string(self.root.join(path)) {
            Ok(text) => text,
            Err(e) => {
                self.error(path, 0, 0, format!("cannot read: {e}"));
                return None;
            }
        };
        let lines = LineIndex::new(&text);
        let report = |c: &mut Compiler, diagnostics: &[OxcDiagnostic]| {
            for d in diagnostics.iter().filter(|d| d.severity == Severity::Error) {
                let offset = d.labels.first().map_or(0, |l| l.offset());
                let (line, column) = lines.line_col(offset);
                let mut message = d.message.to_string();
                if let Some(help) = &d.help {
                    message.push_str(&format!(" ({help})"));
                }
                c.error(path, line, column, message);
            }
        };
        let allocator = Allocator::default();
        match kind_of(&mut self.kinds, &self.root, path) {
            Kind::Json => {
                if let Err(e) = serde_json::from_str::<serde_json::Value>(&text) {
                    let (line, column) = (
                        u32::try_from(e.line()).unwrap_or(0),
                        u32::try_from(e.column()).unwrap_or(0),
                    );
                    self.error(path, line, column, format!("not valid JSON: {e}"));
                    return None;
                }
                return Some(Module {
                    js: commonjs::json_module(&text),
                    source_map: String::new(),
                    deps: Vec::new(),
                    has_default_export: true,
                    facades: Vec::new(),
                });
            }
            Kind::CommonJs if path.starts_with("node_modules/") => {
                return self.compile_commonjs(path, &text, &lines);
            }
            Kind::CommonJs => {
                self.error(
                    path,
                    0,
                    0,
                    "a CommonJS file of the project cannot be bundled; write it as an ES module (packages in node_modules may be CommonJS)",
                );
                return None;
            }
            Kind::Esm => {}
        }
        let source_type = if path.ends_with(".ts") {
            SourceType::ts().with_module(true)
        } else {
            SourceType::mjs()
        };
        let parsed = Parser::new(&allocator, &text, source_type).parse();
        if parsed.panicked
            || parsed
                .diagnostics
                .iter()
                .any(|d| d.severity == Severity::Error)
        {
            report(self, &parsed.diagnostics);
            return None;
        }
        let mut program = parsed.program;

        let has_default_export = has_default_export(&program);

        let semantic = SemanticBuilder::new()
            .with_check_syntax_error(true)
            // The transformer needs enum values evaluated to strip `enum`s.
            .with_enum_eval(true)
            .with_excess_capacity(2.0)
            .build(&program);
        if semantic
            .diagnostics
            .iter()
            .any(|d| d.severity == Severity::Error)
        {
            report(self, &semantic.diagnostics);
            return None;
        }
        let options = TransformOptions::from_target(TARGET).expect("a valid oxc target");
        let transformed = Transformer::new(&allocator, Path::new(path), &options)
            .build_with_scoping(semantic.semantic.into_scoping(), &mut program);
        if transformed
            .diagnostics
            .iter()
            .any(|d| d.severity == Severity::Error)
        {
            report(self, &transformed.diagnostics);
            return None;
        }

        let mut imports = Imports {
            allocator: &allocator,
            root: &self.root,
            kinds: &mut self.kinds,
            importer: path,
            deps: Vec::new(),
            problems: Vec::new(),
            facades: Vec::new(),
            members: HashMap::new(),
        };
        imports.visit_program(&mut program);
        let facades = imports.facades();
        let (deps, problems) = (imports.deps, imports.problems);
        if !problems.is_empty() {
            for (span, message) in problems {
                let (line, column) = lines.line_col(span.start);
                self.error(path, line, column, message);
            }
            return None;
        }

        let generated = Codegen::new()
            .with_options(CodegenOptions {
                // The map's `sources` names the TypeScript file, project-relative.
                source_map_path: Some(PathBuf::from(path)),
                ..CodegenOptions::default()
            })
            .build(&program);
        let source_map = generated
            .map
            .map(|m| m.to_json_string())
            .unwrap_or_default();
        Some(Module {
            js: generated.code,
            source_map,
            deps,
            has_default_export,
            facades,
        })
    }

    /// A CommonJS file of `node_modules`: its `require`s resolved, wrapped (see `commonjs`).
    fn compile_commonjs(&mut self, path: &str, text: &str, lines: &LineIndex) -> Option<Module> {
        let allocator = Allocator::default();
        let parsed = Parser::new(&allocator, text, SourceType::cjs()).parse();
        if parsed.panicked
            || parsed
                .diagnostics
                .iter()
                .any(|d| d.severity == Severity::Error)
        {
            for d in parsed
                .diagnostics
                .iter()
                .filter(|d| d.severity == Severity::Error)
            {
                let offset = d.labels.first().map_or(0, |l| l.offset());
                let (line, column) = lines.line_col(offset);
                self.error(path, line, column, d.message.to_string());
            }
            return None;
        }
        let mut table: BTreeMap<String, Dep> = BTreeMap::new();
        let mut deps = Vec::new();
        let mut failed = false;
        for required in commonjs::requires(&parsed.program) {
            if table.contains_key(&required.specifier) {
                continue;
            }
            let dep = match resolve_require(&self.root, path, &required.specifier) {
                Ok(Required::Bundled(target)) => {
                    let kind = kind_of(&mut self.kinds, &self.root, &target);
                    let dep = Dep::Bundled(bundle_key(&target), kind);
                    deps.push(target);
                    dep
                }
                Ok(Required::Node) => Dep::Node,
                Ok(Required::Provided) => Dep::Provided,
                Err(message) if required.in_try => Dep::Missing(message),
                Err(message) => {
                    let (line, column) = lines.line_col(required.span.start);
                    self.error(
                        path,
                        line,
                        column,
                        format!("cannot require `{}`: {message}", required.specifier),
                    );
                    failed = true;
                    continue;
                }
            };
            table.insert(required.specifier, dep);
        }
        if failed {
            return None;
        }
        let table: Vec<(String, Dep)> = table.into_iter().collect();
        Some(Module {
            js: commonjs::wrap(&bundle_key(path), path, text, &table),
            source_map: String::new(),
            deps,
            has_default_export: false,
            facades: Vec::new(),
        })
    }

    /// Two syncs of an integration cannot save the same model: records are keyed by
    /// (connection, model).
    fn check_models_unique(&mut self, functions: &[CompiledFunction]) {
        let mut owner: HashMap<(&str, &str), &str> = HashMap::new();
        let mut problems = Vec::new();
        for f in functions
            .iter()
            .filter(|f| f.function_type() == FunctionType::Sync)
        {
            for model in &f.config.output {
                if let Some(other) = owner.insert((&f.integration, model), &f.name) {
                    problems.push((
                        f.file.clone(),
                        format!(
                            "sync `{}` saves model `{model}`, which sync `{other}` of integration `{}` saves too",
                            f.name, f.integration
                        ),
                    ));
                }
            }
        }
        for (file, message) in problems {
            self.error(&file, 1, 1, message);
        }
    }
}

fn create(kind: FunctionType) -> &'static str {
    match kind {
        FunctionType::Sync => "createSync",
        FunctionType::Action => "createAction",
        FunctionType::OnEvent => "createOnEvent",
    }
}

fn has_default_export(program: &Program<'_>) -> bool {
    program.body.iter().any(|s| match s {
        Statement::ExportDefaultDeclaration(_) => true,
        Statement::ExportNamedDeclaration(e) => {
            e.specifiers.iter().any(|s| s.exported.name() == "default")
        }
        Statement::ExportFromDeclaration(e) => {
            e.specifiers.iter().any(|s| s.exported.name() == "default")
        }
        _ => false,
    })
}

/// `github/helpers/paging.ts` -> `github/helpers/paging.js`.
fn bundle_key(path: &str) -> String {
    let stem = path
        .strip_suffix(".ts")
        .or_else(|| path.strip_suffix(".js"))
        .unwrap_or(path);
    format!("{stem}.js")
}

/// Rewrites the specifiers of static imports, re-exports and literal dynamic imports to bundle
/// keys (a CommonJS module's to its facade's), and collects the modules they name.
struct Imports<'a, 'c> {
    allocator: &'a Allocator,
    root: &'c Path,
    kinds: &'c mut HashMap<String, Kind>,
    importer: &'c str,
    deps: Vec<String>,
    problems: Vec<(Span, String)>,
    /// CommonJS modules imported: path, names imported, namespace bindings.
    facades: Vec<(String, BTreeSet<String>, Vec<String>)>,
    /// `object.property` accesses by object name, for the names a namespace binding uses.
    members: HashMap<String, BTreeSet<String>>,
}

impl<'a> Imports<'a, '_> {
    fn rewrite(
        &mut self,
        source: &mut StringLiteral<'a>,
        names: BTreeSet<String>,
        namespaces: Vec<String>,
    ) {
        match resolve(self.root, self.importer, source.value.as_str()) {
            Ok(None) => {}
            Ok(Some(path)) => {
                let mut key = bundle_key(&path);
                if kind_of(self.kinds, self.root, &path) == Kind::CommonJs {
                    key = commonjs::facade_key(&key);
                    self.facades.push((path.clone(), names, namespaces));
                }
                source.value = Str::from_in(key.as_str(), self.allocator);
                source.raw = None;
                self.deps.push(path);
            }
            Err(message) => self.problems.push((source.span, message)),
        }
    }

    /// The names each imported CommonJS module must export for this module.
    fn facades(&mut self) -> Vec<(String, BTreeSet<String>)> {
        std::mem::take(&mut self.facades)
            .into_iter()
            .map(|(path, mut names, namespaces)| {
                for ns in namespaces {
                    if let Some(used) = self.members.get(&ns) {
                        names.extend(used.iter().cloned());
                    }
                }
                names.remove("default");
                (path, names)
            })
            .collect()
    }
}

impl<'a> VisitMut<'a> for Imports<'a, '_> {
    fn visit_import_declaration(&mut self, it: &mut oxc::ast::ast::ImportDeclaration<'a>) {
        let mut names = BTreeSet::new();
        let mut namespaces = Vec::new();
        for specifier in it.specifiers.iter().flatten() {
            match specifier {
                ImportDeclarationSpecifier::ImportSpecifier(s) => {
                    names.insert(s.imported.name().to_string());
                }
                ImportDeclarationSpecifier::ImportNamespaceSpecifier(s) => {
                    namespaces.push(s.local.name.to_string());
                }
                ImportDeclarationSpecifier::ImportDefaultSpecifier(_) => {}
            }
        }
        self.rewrite(&mut it.source, names, namespaces);
    }

    fn visit_export_all_declaration(&mut self, it: &mut oxc::ast::ast::ExportAllDeclaration<'a>) {
        self.rewrite(&mut it.source, BTreeSet::new(), Vec::new());
    }

    fn visit_export_from_declaration(&mut self, it: &mut oxc::ast::ast::ExportFromDeclaration<'a>) {
        let names = it
            .specifiers
            .iter()
            .map(|s| s.local.name().to_string())
            .collect();
        self.rewrite(&mut it.source, names, Vec::new());
    }

    fn visit_import_expression(&mut self, it: &mut oxc::ast::ast::ImportExpression<'a>) {
        match &mut it.source {
            Expression::StringLiteral(source) => self.rewrite(source, BTreeSet::new(), Vec::new()),
            other => self.problems.push((
                oxc::span::GetSpan::span(other),
                "`import()` needs a literal path, so the module can be bundled".into(),
            )),
        }
        walk_mut::walk_import_expression(self, it);
    }

    fn visit_static_member_expression(&mut self, it: &mut StaticMemberExpression<'a>) {
        if let Expression::Identifier(object) = &it.object {
            self.members
                .entry(object.name.to_string())
                .or_default()
                .insert(it.property.name.to_string());
        }
        walk_mut::walk_static_member_expression(self, it);
    }

    fn visit_computed_member_expression(&mut self, it: &mut ComputedMemberExpression<'a>) {
        if let (Expression::Identifier(object), Expression::StringLiteral(property)) =
            (&it.object, &it.expression)
        {
            self.members
                .entry(object.name.to_string())
                .or_default()
                .insert(property.value.to_string());
        }
        walk_mut::walk_computed_member_expression(self, it);
    }
}

/// Whether `path` is an ES module, a CommonJS one or JSON. The project's own `.js` files are ES
/// modules; a package's `.js` file is whatever its syntax says (`import`/`export` or not).
fn kind_of(kinds: &mut HashMap<String, Kind>, root: &Path, path: &str) -> Kind {
    if let Some(kind) = kinds.get(path) {
        return *kind;
    }
    let kind = if path.ends_with(".json") {
        Kind::Json
    } else if path.ends_with(".cjs") {
        Kind::CommonJs
    } else if !path.starts_with("node_modules/") || !path.ends_with(".js") {
        Kind::Esm
    } else {
        let text = std::fs::read_to_string(root.join(path)).unwrap_or_default();
        let allocator = Allocator::default();
        let parsed = Parser::new(&allocator, &text, SourceType::unambiguous()).parse();
        if parsed.program.source_type.is_module() {
            Kind::Esm
        } else {
            Kind::CommonJs
        }
    };
    kinds.insert(path.to_string(), kind);
    kind
}

/// Where an import specifier of `importer` leads: `None` for the SDK, the project-relative
/// path of a module, or why it cannot be bundled.
fn resolve(
    root: &Path,
    importer: &str,
    specifier: &str,
) -> std::result::Result<Option<String>, String> {
    if specifier == SDK_MODULE {
        return Ok(None);
    }
    if let Some(helper) = specifier.strip_prefix("@oxc-project/runtime/helpers/") {
        // Lowering syntax newer than the target inserts these imports.
        return Err(format!(
            "this script uses syntax newer than {TARGET} that needs the runtime helper `{helper}` (e.g. `using` declarations or decorators); write it without"
        ));
    }
    if !specifier.starts_with("./") && !specifier.starts_with("../") {
        return bare(root, importer, specifier, Style::Import)
            .map_err(|e| format!("cannot import `{specifier}`: {e}"));
    }
    if importer.starts_with("node_modules/") {
        return node_modules::resolve_relative(root, importer, specifier)
            .map(Some)
            .map_err(|e| format!("cannot import `{specifier}`: {e}"));
    }
    let base = Path::new(importer).parent().unwrap_or(Path::new(""));
    let mut parts: Vec<String> = Vec::new();
    for component in base.join(specifier).components() {
        match component {
            Component::Normal(p) => parts.push(p.to_string_lossy().into_owned()),
            Component::CurDir => {}
            Component::ParentDir => {
                if parts.pop().is_none() {
                    return Err(format!(
                        "cannot import `{specifier}`: it leads outside the project directory"
                    ));
                }
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(format!("cannot import `{specifier}`: not a relative path"));
            }
        }
    }
    let joined = parts.join("/");
    let candidates: Vec<String> = if let Some(stem) = joined.strip_suffix(".js") {
        // TypeScript's ESM convention: `./x.js` names `x.ts`.
        vec![format!("{stem}.ts"), joined.clone()]
    } else if joined.ends_with(".ts") || joined.ends_with(".mjs") || joined.ends_with(".json") {
        vec![joined.clone()]
    } else {
        vec![
            format!("{joined}.ts"),
            format!("{joined}.js"),
            format!("{joined}/index.ts"),
            format!("{joined}/index.js"),
        ]
    };
    for candidate in &candidates {
        let full = root.join(candidate);
        if full.is_file() {
            // A symlink must not reach outside the project either.
            if !full.canonicalize().is_ok_and(|p| p.starts_with(root)) {
                return Err(format!(
                    "cannot import `{specifier}`: it leads outside the project directory"
                ));
            }
            return Ok(Some(candidate.clone()));
        }
    }
    let stem = joined.rsplit('/').next().unwrap_or("");
    if stem == "models" || stem == "models.js" || stem == "models.ts" {
        return Err(format!(
            "cannot import values from `{specifier}`: Lasso generates no `models` module; import its types with `import type`"
        ));
    }
    Err(format!(
        "cannot import `{specifier}`: no such file (looked for {})",
        candidates.join(", ")
    ))
}

/// A bare specifier: a package or Node module Lasso provides (left for the sandbox to load), a
/// package from the project's `node_modules` (bundled), or why it cannot be bundled.
fn bare(
    root: &Path,
    importer: &str,
    specifier: &str,
    style: Style,
) -> std::result::Result<Option<String>, String> {
    if sandbox::packages::is_provided(specifier) {
        return sandbox::packages::resolve_bare(specifier).map(|_| None);
    }
    if sandbox::node::resolve(specifier).is_some() {
        return Ok(None);
    }
    if sandbox::node::is_builtin(specifier) {
        let provided = sandbox::node::PROVIDED.join(", ");
        return Err(match node_modules::package_of(importer) {
            Some(package) => format!(
                "package `{package}` needs the Node module `{specifier}`, which Lasso does not provide (it provides {provided})"
            ),
            None => format!(
                "Lasso does not provide the Node module `{specifier}` (it provides {provided})"
            ),
        });
    }
    node_modules::resolve_bare(root, importer, specifier, style).map(Some)
}

/// What a `require` of a package file gets.
enum Required {
    Bundled(String),
    Node,
    Provided,
}

/// Where a `require(specifier)` in the package file `importer` leads.
fn resolve_require(
    root: &Path,
    importer: &str,
    specifier: &str,
) -> std::result::Result<Required, String> {
    if specifier == SDK_MODULE {
        return Ok(Required::Provided);
    }
    if specifier.starts_with("./")
        || specifier.starts_with("../")
        || specifier == "."
        || specifier == ".."
    {
        return node_modules::resolve_relative(root, importer, specifier).map(Required::Bundled);
    }
    if specifier.starts_with('/') {
        return Err("an absolute path cannot be bundled".into());
    }
    if sandbox::node::resolve(specifier).is_some() {
        return Ok(Required::Node);
    }
    match bare(root, importer, specifier, Style::Require)? {
        Some(path) => Ok(Required::Bundled(path)),
        None => Ok(Required::Provided),
    }
}

/// Byte offsets to 1-based lines and (character) columns.
struct LineIndex<'t> {
    text: &'t str,
    starts: Vec<usize>,
}

impl<'t> LineIndex<'t> {
    fn new(text: &'t str) -> Self {
        let starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Self { text, starts }
    }

    fn line_col(&self, offset: u32) -> (u32, u32) {
        let offset = (offset as usize).min(self.text.len());
        let line = self.starts.partition_point(|&s| s <= offset).max(1);
        let start = self.starts[line - 1];
        let column = self
            .text
            .get(start..offset)
            .map_or(0, |s| s.chars().count());
        (
            u32::try_from(line).unwrap_or(u32::MAX),
            u32::try_from(column + 1).unwrap_or(u32::MAX),
        )
    }
}
