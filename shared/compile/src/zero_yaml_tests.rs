//! Compiling Nango's zero-yaml projects: configuration read by running the script, what is
//! refused at compile time (and how it is named), `index.ts` discovery, and bare imports from
//! the project's `node_modules` (ES modules and CommonJS).

use std::path::PathBuf;

use lasso_core::Error;
use lasso_core::scripts::*;

use crate::compile;

/// A project in a temporary directory, removed when dropped.
struct Project(PathBuf);

impl Project {
    fn new(files: &[(&str, &str)]) -> Self {
        let dir = std::env::temp_dir().join(format!("lasso-zero-yaml-{}", uuid::Uuid::new_v4()));
        for (path, content) in files {
            let full = dir.join(path);
            std::fs::create_dir_all(full.parent().unwrap()).unwrap();
            std::fs::write(full, content).unwrap();
        }
        Self(dir)
    }

    fn compile(&self) -> lasso_core::Result<CompiledProject> {
        compile(&self.0)
    }

    fn problems(&self) -> Vec<Diagnostic> {
        match self.compile() {
            Err(Error::Compile(d)) => d,
            other => panic!("expected compile errors, got {other:?}"),
        }
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn only(d: &[Diagnostic], file: &str, needles: &[&str]) {
    assert_eq!(d.len(), 1, "{d:#?}");
    assert_eq!(d[0].file, file, "{d:#?}");
    for needle in needles {
        assert!(d[0].message.contains(needle), "no `{needle}` in {d:#?}");
    }
}

const SYNC_HEAD: &str = "import { createSync } from 'nango';\nimport { z } from 'zod';\n";

#[test]
fn a_config_that_throws_is_named_with_its_file_and_line() {
    let p = Project::new(&[(
        "x/syncs/s.ts",
        &format!(
            "{SYNC_HEAD}const settings: any = undefined;\nexport default createSync({{\n  frequency: settings.frequency,\n  models: {{ M: z.object({{ id: z.string() }}) }},\n  exec: async () => {{}},\n}});\n"
        ),
    )]);
    only(
        &p.problems(),
        "x/syncs/s.ts",
        &["evaluating the script", "TypeError", "x/syncs/s.ts:5"],
    );
}

#[test]
fn a_top_level_that_never_ends_or_allocates_without_end_is_stopped() {
    let p = Project::new(&[
        (
            "x/actions/spin.ts",
            "import { createAction } from 'nango';\nwhile (true) {}\nexport default createAction({ exec: async () => 1 });\n",
        ),
        (
            "x/actions/hog.ts",
            "import { createAction } from 'nango';\nconst all: string[] = [];\nfor (;;) { all.push('x'.repeat(1 << 20) + all.length); }\nexport default createAction({ exec: async () => 1 });\n",
        ),
    ]);
    let d = p.problems();
    assert_eq!(d.len(), 2, "{d:#?}");
    let hog = d.iter().find(|d| d.file == "x/actions/hog.ts").unwrap();
    assert!(hog.message.contains("memory limit"), "{hog:?}");
    let spin = d.iter().find(|d| d.file == "x/actions/spin.ts").unwrap();
    assert!(spin.message.contains("deadline"), "{spin:?}");
}

#[test]
fn a_schema_json_schema_cannot_express_is_refused_by_model() {
    let p = Project::new(&[(
        "x/syncs/s.ts",
        &format!(
            "{SYNC_HEAD}export default createSync({{\n  frequency: 'every hour',\n  models: {{ Tagged: z.object({{ id: z.string(), tags: z.map(z.string(), z.string()) }}) }},\n  exec: async () => {{}},\n}});\n"
        ),
    )]);
    only(
        &p.problems(),
        "x/syncs/s.ts",
        &["`models.Tagged`", "z.map()"],
    );
}

#[test]
fn a_sync_model_without_id_and_a_non_zod_model_are_refused() {
    let p = Project::new(&[(
        "x/syncs/s.ts",
        &format!(
            "{SYNC_HEAD}export default createSync({{\n  frequency: 'every hour',\n  models: {{ NoId: z.object({{ name: z.string() }}), Wrong: 'string' }},\n  exec: async () => {{}},\n}});\n"
        ),
    )]);
    let d = p.problems();
    assert!(
        d.iter()
            .any(|d| d.message.contains("`models.Wrong`: expected a zod schema")),
        "{d:#?}"
    );
    assert!(
        d.iter()
            .any(|d| d.message.contains("model `NoId` has no `id` field")),
        "{d:#?}"
    );
}

#[test]
fn index_ts_lists_the_functions_and_the_export_decides_the_kind() {
    let p = Project::new(&[
        (
            "index.ts",
            "// -- Integration: x\nimport './x/syncs/things.js';\nimport type { Unused } from './x/types.js';\n",
        ),
        // In syncs/, but it exports an action: it is an action.
        (
            "x/syncs/things.ts",
            "import { createAction } from 'nango';\nexport default createAction({ exec: async () => 1 });\n",
        ),
        // Not imported by index.ts: not a function of the project.
        (
            "x/actions/ignored.ts",
            "import { createAction } from 'nango';\nexport default createAction({ exec: async () => 1 });\n",
        ),
    ]);
    let compiled = p.compile().unwrap();
    assert_eq!(compiled.functions.len(), 1);
    assert_eq!(compiled.functions[0].name, "things");
    assert_eq!(compiled.functions[0].function_type(), FunctionType::Action);

    let missing = Project::new(&[("index.ts", "import './x/syncs/gone.js';\n")]);
    only(
        &missing.problems(),
        "index.ts",
        &["`./x/syncs/gone.js`", "does not exist"],
    );
}

const ACTION_IMPORTING: &str = "import { createAction } from 'nango';\nimport { shout } from 'shouty';\nexport default createAction({ exec: async () => shout('hi') });\n";

#[tokio::test]
async fn an_es_module_package_from_node_modules_is_bundled_and_runs() {
    let p = Project::new(&[
        ("x/actions/a.ts", ACTION_IMPORTING),
        (
            "node_modules/shouty/package.json",
            r#"{"name": "shouty", "type": "module", "exports": {".": {"import": "./lib/index.js", "require": "./lib/index.cjs"}}}"#,
        ),
        (
            "node_modules/shouty/lib/index.js",
            "import { bang } from './bang.js';\nexport const shout = (s) => bang(s.toUpperCase());\n",
        ),
        (
            "node_modules/shouty/lib/bang.js",
            "export const bang = (s) => s + '!';\n",
        ),
    ]);
    let compiled = p.compile().unwrap();
    let bundle = Bundle::parse(&compiled.functions[0].bundle).unwrap();
    assert!(
        bundle
            .modules
            .contains_key("node_modules/shouty/lib/bang.js")
    );
    let out = lasso_sandbox::run(
        &bundle,
        Some(serde_json::Value::Null),
        lasso_sandbox::RunInfo::default(),
        std::sync::Arc::new(lasso_runner::run::TaskHost::without_connection()),
        lasso_sandbox::Limits::default(),
        tokio_util::sync::CancellationToken::new(),
    )
    .await
    .unwrap();
    assert_eq!(out, "HI!");
}

#[test]
fn packages_that_cannot_be_bundled_are_refused_by_name() {
    let absent = Project::new(&[("x/actions/a.ts", ACTION_IMPORTING)]);
    only(
        &absent.problems(),
        "x/actions/a.ts",
        &["package `shouty` is not installed in the project's node_modules"],
    );

    let needs_fs = Project::new(&[
        ("x/actions/a.ts", ACTION_IMPORTING),
        (
            "node_modules/shouty/package.json",
            r#"{"name": "shouty", "type": "module", "main": "index.js"}"#,
        ),
        (
            "node_modules/shouty/index.js",
            "\nimport { readFileSync } from 'node:fs';\nexport const shout = (s) => readFileSync(s);\n",
        ),
    ]);
    let d = needs_fs.problems();
    only(
        &d,
        "node_modules/shouty/index.js",
        &[
            "package `shouty` needs the Node module `node:fs`",
            "crypto, url, buffer, querystring",
        ],
    );
    assert_eq!((d[0].line, d[0].column), (2, 30));

    let script_fs = Project::new(&[(
        "x/actions/a.ts",
        "import { createAction } from 'nango';\nimport fs from 'fs';\nexport default createAction({ exec: async () => fs });\n",
    )]);
    only(
        &script_fs.problems(),
        "x/actions/a.ts",
        &["Lasso does not provide the Node module `fs`"],
    );
}

async fn run_action(compiled: &CompiledProject, name: &str) -> serde_json::Value {
    let f = compiled.functions.iter().find(|f| f.name == name).unwrap();
    lasso_sandbox::run(
        &Bundle::parse(&f.bundle).unwrap(),
        Some(serde_json::Value::Null),
        lasso_sandbox::RunInfo::default(),
        std::sync::Arc::new(lasso_runner::run::TaskHost::without_connection()),
        lasso_sandbox::Limits::default(),
        tokio_util::sync::CancellationToken::new(),
    )
    .await
    .unwrap()
}

/// `slugger` (CommonJS, `main`) requires a relative file, a JSON file, a nested dependency
/// and `crypto`; `tiny-kv` (CommonJS through `exports`' `require` condition) sets
/// `__esModule` as TypeScript's CommonJS output does.
fn commonjs_packages() -> Vec<(&'static str, &'static str)> {
    vec![
        (
            "node_modules/slugger/package.json",
            r#"{"name": "slugger", "version": "1.0.0", "main": "./lib"}"#,
        ),
        (
            "node_modules/slugger/lib/index.js",
            "'use strict';\nconst { clean } = require('./clean');\nconst defaults = require('../defaults.json');\nconst pad = require('left-pad');\nconst crypto = require('crypto');\nlet optional;\ntry { optional = require('fs'); } catch (e) { optional = e.code; }\nexports.slug = (s) => pad(clean(s).split(' ').join(defaults.separator), 12);\nexports.digest = (s) => crypto.createHash('sha256').update(s).digest('hex').slice(0, 8);\nexports.optional = () => optional;\n",
        ),
        (
            "node_modules/slugger/lib/clean.js",
            "module.exports.clean = function (s) { return s.trim().toLowerCase(); };\n",
        ),
        (
            "node_modules/slugger/defaults.json",
            "{\"separator\": \"-\"}\n",
        ),
        (
            "node_modules/slugger/node_modules/left-pad/package.json",
            r#"{"name": "left-pad"}"#,
        ),
        (
            "node_modules/slugger/node_modules/left-pad/index.js",
            "module.exports = (s, n) => s.length >= n ? s : '.'.repeat(n - s.length) + s;\n",
        ),
        (
            "node_modules/tiny-kv/package.json",
            r#"{"name": "tiny-kv", "exports": {".": {"types": "./index.d.ts", "browser": "./none.js", "node": {"require": "./cjs/index.cjs"}, "default": "./cjs/index.cjs"}, "./package.json": "./package.json"}}"#,
        ),
        (
            "node_modules/tiny-kv/cjs/index.cjs",
            "\"use strict\";\nObject.defineProperty(exports, \"__esModule\", { value: true });\nclass Store { constructor() { this.m = new Map(); } set(k, v) { this.m.set(k, v); return this; } get(k) { return this.m.get(k); } }\nexports.default = Store;\nexports.VERSION = '2.0';\n",
        ),
    ]
}

#[tokio::test]
async fn commonjs_packages_from_node_modules_are_bundled_and_run() {
    let mut files = commonjs_packages();
    files.push((
        "x/actions/use.ts",
        "import { createAction } from 'nango';\nimport { slug } from 'slugger';\nimport * as slugger from 'slugger';\nimport Store, { VERSION } from 'tiny-kv';\n\nexport default createAction({\n  exec: async () => {\n    const store = new Store().set('k', slug('  Hello World '));\n    return { slug: store.get('k'), digest: slugger.digest('abc'), optional: slugger.optional(), version: VERSION };\n  },\n});\n",
    ));
    let p = Project::new(&files);
    let compiled = p.compile().unwrap();
    let bundle = Bundle::parse(&compiled.functions[0].bundle).unwrap();
    assert!(
        bundle
            .modules
            .contains_key("node_modules/slugger/node_modules/left-pad/index.js"),
        "{:?}",
        bundle.modules.keys()
    );
    assert!(
        bundle
            .modules
            .contains_key("node_modules/slugger/defaults.json.js")
    );
    let out = run_action(&compiled, "use").await;
    assert_eq!(
        out,
        serde_json::json!({
            "slug": ".hello-world",
            "digest": "ba7816bf",
            "optional": "MODULE_NOT_FOUND",
            "version": "2.0",
        })
    );
}

#[test]
fn a_commonjs_package_needing_an_unprovided_node_module_is_refused_with_file_and_line() {
    let p = Project::new(&[
        ("x/actions/a.ts", ACTION_IMPORTING),
        (
            "node_modules/shouty/package.json",
            r#"{"name": "shouty", "main": "index.js"}"#,
        ),
        (
            "node_modules/shouty/index.js",
            "const util = require('./util');\nmodule.exports.shout = (s) => util.loud(s);\n",
        ),
        (
            "node_modules/shouty/util.js",
            "'use strict';\n\nconst { Transform } = require('stream');\nexports.loud = (s) => s;\n",
        ),
    ]);
    let d = p.problems();
    only(
        &d,
        "node_modules/shouty/util.js",
        &[
            "cannot require `stream`",
            "package `shouty` needs the Node module `stream`, which Lasso does not provide",
        ],
    );
    assert_eq!((d[0].line, d[0].column), (3, 31));
}
