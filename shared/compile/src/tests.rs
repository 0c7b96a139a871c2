use lasso_core::Error;
use lasso_core::scripts::*;

/// Writes `files` (path, content) under a fresh temporary directory, removed when dropped.
fn project(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("lasso-compile-")
        .tempdir()
        .unwrap();
    for (path, content) in files {
        let full = dir.path().join(path);
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(full, content).unwrap();
    }
    dir
}

/// Compiles a project written by [`project`]; the directory goes with it.
fn compile(dir: tempfile::TempDir) -> lasso_core::Result<CompiledProject> {
    crate::compile(dir.path())
}

fn problems(files: &[(&str, &str)]) -> Vec<Diagnostic> {
    match compile(project(files)) {
        Err(Error::Compile(d)) => d,
        other => panic!("expected compile errors, got {other:?}"),
    }
}

fn bundle_of<'p>(project: &'p CompiledProject, name: &str) -> (Bundle, &'p CompiledFunction) {
    let f = project
        .functions
        .iter()
        .find(|f| f.name == name)
        .unwrap_or_else(|| panic!("no function {name}"));
    (Bundle::parse(&f.bundle).unwrap(), f)
}

const NANGO_YAML_V2: &str = r#"
integrations:
  github:
    syncs:
      issues:
        runs: every 30 minutes
        description: |
          Issues of the user's repositories
        output: GithubIssue
        sync_type: incremental
        track_deletes: true
        auto_start: false
        endpoint: GET /github/issues
        scopes: repo, read:user
        webhook-subscriptions: [issues]
        version: 1.0.2
      repos:
        runs: every hour
        output: [GithubRepo]
        endpoint:
          method: GET
          path: /github/repos
          group: Repos
    actions:
      create-issue:
        input: CreateIssue
        output: GithubIssue
        endpoint: POST /github/issues
    on-events:
      post-connection-creation:
        - setup
models:
  Timestamps:
    created_at: string
    updated_at: string
  GithubIssue:
    __extends: Timestamps
    id: string
    title: string
    labels: string[]
  GithubRepo:
    id: integer
    name: string
  CreateIssue:
    title: string
    body?: string
"#;

const ISSUES_TS: &str = r#"import type { NangoSync, GithubIssue } from '../../models';
import { paginate } from '../helpers/paging';
import { toIssue } from '../helpers';

interface Page {
    items: GithubIssue[];
}

export default async function fetchData(nango: NangoSync): Promise<void> {
    const pages: Page[] = await paginate(nango, '/issues');
    for (const page of pages) {
        await nango.batchSave(page.items.map(toIssue), 'GithubIssue');
    }
    throw new Error('line 14');
}
"#;

fn github_project() -> Vec<(&'static str, &'static str)> {
    vec![
        ("nango.yaml", NANGO_YAML_V2),
        ("github/syncs/issues.ts", ISSUES_TS),
        (
            "github/syncs/repos.ts",
            "import { paginate } from '../helpers/paging.js';\nexport default async function (nango: any) { await paginate(nango, '/repos'); }\n",
        ),
        (
            "github/actions/create-issue.ts",
            "import { createAction } from 'nango';\nexport default createAction({ exec: async (nango: any, input: { title: string }) => ({ id: '1', title: input.title }) });\n",
        ),
        (
            "github/on-events/setup.ts",
            "export default async function (nango: any): Promise<void> { await nango.log('hi'); }\n",
        ),
        (
            "github/helpers/paging.ts",
            "export async function paginate<T>(nango: any, path: string): Promise<T[]> {\n    const out: T[] = [];\n    for await (const page of nango.paginate({ endpoint: path })) { out.push(page as T); }\n    return out;\n}\n",
        ),
        (
            "github/helpers/index.ts",
            "export const toIssue = (raw: any): any => ({ id: String(raw.id), title: raw.title as string });\n",
        ),
    ]
}

#[test]
fn nango_yaml_v2_project_compiles() {
    let compiled = compile(project(&github_project())).unwrap();
    let names: Vec<_> = compiled
        .functions
        .iter()
        .map(|f| (f.integration.as_str(), f.function_type(), f.name.as_str()))
        .collect();
    assert_eq!(
        names,
        [
            ("github", FunctionType::Sync, "issues"),
            ("github", FunctionType::Sync, "repos"),
            ("github", FunctionType::Action, "create-issue"),
            ("github", FunctionType::OnEvent, "setup"),
        ]
    );

    let (bundle, issues) = bundle_of(&compiled, "issues");
    let sync = issues.config.sync().unwrap();
    assert_eq!(sync.frequency_secs, 1800);
    assert_eq!(sync.sync_type, SyncType::Incremental);
    assert!(sync.track_deletes && !sync.auto_start);
    assert_eq!(sync.webhook_subscriptions, ["issues"]);
    assert_eq!(issues.config.scopes, ["repo", "read:user"]);
    assert_eq!(issues.config.version.as_deref(), Some("1.0.2"));
    assert_eq!(
        issues.config.description,
        "Issues of the user's repositories"
    );
    assert_eq!(
        issues.config.endpoints,
        [Endpoint {
            method: "GET".into(),
            path: "/github/issues".into(),
            group: None
        }]
    );
    let model = &issues.config.models[0];
    assert_eq!(model.name, "GithubIssue");
    let fields = model.fields.as_ref().unwrap();
    assert!(
        fields.contains_key("created_at"),
        "__extends merged: {fields:?}"
    );
    assert_eq!(fields["labels"], "string[]");

    // The bundle holds the entry and both helpers (`../helpers/paging` and the index file),
    // with imports rewritten to bundle keys and types gone.
    assert_eq!(bundle.entry, "github/syncs/issues.js");
    let keys: Vec<_> = bundle.modules.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "github/helpers/index.js",
            "github/helpers/paging.js",
            "github/syncs/issues.js"
        ]
    );
    let js = &bundle.modules["github/syncs/issues.js"];
    assert!(js.contains("from \"github/helpers/paging.js\""), "{js}");
    assert!(js.contains("from \"github/helpers/index.js\""), "{js}");
    assert!(!js.contains("models") && !js.contains("interface") && !js.contains(": Page[]"));
    assert!(js.contains("async function fetchData"));
    assert_eq!(bundle.source_maps.len(), 3);

    let (_, repos) = bundle_of(&compiled, "repos");
    assert_eq!(repos.config.endpoints[0].group.as_deref(), Some("Repos"));
    let (action_bundle, action) = bundle_of(&compiled, "create-issue");
    assert_eq!(action.config.input.as_deref(), Some("CreateIssue"));
    assert_eq!(action.config.output, ["GithubIssue"]);
    assert!(action_bundle.modules["github/actions/create-issue.js"].contains("from \"nango\""));
    let (_, setup) = bundle_of(&compiled, "setup");
    assert_eq!(
        setup.config.trigger,
        Trigger::OnEvent {
            event: "post-connection-creation".into()
        }
    );

    // Same sources, same bytes.
    let again = compile(project(&github_project())).unwrap();
    assert_eq!(again, compiled);
}

#[test]
fn source_maps_point_into_the_typescript() {
    let compiled = compile(project(&github_project())).unwrap();
    let (bundle, _) = bundle_of(&compiled, "issues");
    let js = &bundle.modules["github/syncs/issues.js"];
    let (js_line, js_col) = js
        .lines()
        .enumerate()
        .find_map(|(i, l)| l.find("throw new Error").map(|c| (i + 1, c + 1)))
        .unwrap();
    assert!(
        js_line < 14,
        "types were stripped, so the JS is shorter: {js}"
    );
    let stack =
        format!("Error: line 14\n    at fetchData (github/syncs/issues.js:{js_line}:{js_col})\n");
    let remapped = lasso_sandbox::remap_stack(&bundle, &stack);
    assert_eq!(
        remapped,
        "Error: line 14\n    at fetchData (github/syncs/issues.ts:14:5)\n"
    );
    // Unknown positions stay as they are.
    assert_eq!(
        lasso_sandbox::remap_stack(&bundle, "at x (other.js:1:1)"),
        "at x (other.js:1:1)"
    );
}

#[test]
fn object_form_scripts_carry_their_config() {
    let compiled = compile(project(&[
        (
            "slack/syncs/messages.ts",
            r#"import { createSync } from 'nango';
import { z } from 'zod';
import { clean } from '../../shared/text';

const UserSchema = z.object({ id: z.string(), name: z.string().optional() });
const sync = createSync({
    description: 'Messages of the channels',
    version: '2.0.0',
    frequency: 'every 2 days',
    autoStart: false,
    syncType: 'incremental',
    trackDeletes: true,
    endpoints: [{ method: 'GET', path: '/slack/messages', group: 'Messages' }],
    scopes: ['channels:history'],
    webhookSubscriptions: ['message'],
    models: {
        SlackMessage: { id: 'string', text: 'string' },
        SlackUser: UserSchema,
    },
    exec: async (nango) => {
        await nango.batchSave([{ id: '1', text: clean(' hi ') }], 'SlackMessage');
    },
});
export default sync;
"#,
        ),
        (
            "slack/actions/post.ts",
            "import { createAction } from 'nango';\nimport { z } from 'zod';\nconst PostInput = z.object({ text: z.string() }).meta({ id: 'PostInput' });\nconst PostOutput = z.object({ ok: z.boolean() }).meta({ id: 'PostOutput' });\nexport default createAction({\n  description: 'Post a message',\n  endpoint: { method: 'POST', path: '/slack/post' },\n  input: PostInput,\n  output: PostOutput,\n  exec: async (nango, input) => ({ ok: true }),\n});\n",
        ),
        (
            "slack/on-events/validate.ts",
            "import { createOnEvent } from 'nango';\nexport default createOnEvent({ event: 'validate-connection', exec: async () => {} });\n",
        ),
        (
            "shared/text.ts",
            "export const clean = (s: string): string => s.trim();\n",
        ),
    ]))
    .unwrap();
    let (bundle, messages) = bundle_of(&compiled, "messages");
    let sync = messages.config.sync().unwrap();
    assert_eq!(sync.frequency_secs, 2 * 86_400);
    assert_eq!(sync.runs, "every 2 days");
    assert_eq!(sync.sync_type, SyncType::Incremental);
    assert!(!sync.auto_start && sync.track_deletes);
    assert_eq!(messages.config.output, ["SlackMessage", "SlackUser"]);
    assert_eq!(
        messages.config.models[0].fields.as_ref().unwrap()["text"],
        "string"
    );
    assert_eq!(messages.config.models[1].fields, None);
    let user = messages.config.models[1].json_schema.as_ref().unwrap();
    assert_eq!(user["properties"]["id"]["type"], "string");
    assert_eq!(user["required"], serde_json::json!(["id"]));
    assert_eq!(
        messages.config.endpoints[0].group.as_deref(),
        Some("Messages")
    );
    assert!(bundle.modules.contains_key("shared/text.js"));

    let (_, post) = bundle_of(&compiled, "post");
    assert_eq!(post.config.input.as_deref(), Some("PostInput"));
    assert_eq!(post.config.output, ["PostOutput"]);
    assert_eq!(post.config.endpoints[0].method, "POST");
    let (_, validate) = bundle_of(&compiled, "validate");
    assert_eq!(validate.function_type(), FunctionType::OnEvent);
}

#[test]
fn nango_yaml_v1_layout_compiles() {
    let compiled = compile(project(&[
        (
            "nango.yaml",
            "integrations:\n  hubspot:\n    contacts:\n      runs: every day\n      returns: Contact\n    create-contact:\n      type: action\n      returns: Contact\nmodels:\n  Contact:\n    id: string\n",
        ),
        ("contacts.ts", "export default async function () {}\n"),
        ("create-contact.ts", "export default async function () { return { id: '1' }; }\n"),
    ]))
    .unwrap();
    let (_, contacts) = bundle_of(&compiled, "contacts");
    assert_eq!(contacts.integration, "hubspot");
    assert_eq!(contacts.config.sync().unwrap().frequency_secs, 86_400);
    assert_eq!(
        contacts.config.sync().unwrap().sync_type,
        SyncType::Incremental
    );
    let (bundle, action) = bundle_of(&compiled, "create-contact");
    assert_eq!(action.function_type(), FunctionType::Action);
    assert_eq!(bundle.entry, "create-contact.js");
}

#[test]
fn frequencies() {
    for (runs, secs) in [
        ("every 30 minutes", 1800),
        ("every hour", 3600),
        ("every 2 days", 172_800),
        ("every 30s", 30),
        ("every half hour", 1800),
        ("every day", 86_400),
        ("every week", 604_800),
        ("every 1h 30m", 5400),
        ("15m", 900),
    ] {
        assert_eq!(parse_frequency(runs), Ok(secs), "{runs}");
    }
    assert!(
        parse_frequency("every 29s")
            .unwrap_err()
            .contains("too frequent")
    );
    assert!(
        parse_frequency("every 10 seconds")
            .unwrap_err()
            .contains("30 seconds")
    );
    assert!(
        parse_frequency("whenever")
            .unwrap_err()
            .contains("not a frequency")
    );
}

fn with(file: &'static str, content: &'static str) -> Vec<(&'static str, &'static str)> {
    let mut files = github_project();
    files.retain(|(f, _)| *f != file);
    files.push((file, content));
    files
}

fn assert_problem(d: &[Diagnostic], file: &str, line: u32, needle: &str) {
    assert!(
        d.iter()
            .any(|d| d.file == file && d.line == line && d.message.contains(needle)),
        "no `{needle}` at {file}:{line} in {d:#?}"
    );
}

#[test]
fn syntax_errors_name_file_line_and_column() {
    let d = problems(&with(
        "github/helpers/paging.ts",
        "export async function paginate(nango: any) {\n    const x = ;\n}\n",
    ));
    assert_eq!(d.len(), 1, "{d:#?}");
    assert_eq!(
        (d[0].file.as_str(), d[0].line, d[0].column),
        ("github/helpers/paging.ts", 2, 15)
    );
    assert_eq!(
        d[0].to_string(),
        format!("github/helpers/paging.ts:2:15: {}", d[0].message)
    );
}

#[test]
fn bad_frequency_names_the_yaml_line() {
    let yaml = NANGO_YAML_V2.replace("every 30 minutes", "every 10s");
    let yaml: &'static str = Box::leak(yaml.into_boxed_str());
    let d = problems(&with("nango.yaml", yaml));
    assert_problem(&d, "nango.yaml", 6, "too frequent");
}

#[test]
fn bad_frequency_in_object_form_is_refused_and_a_computed_one_read() {
    let d = problems(&[(
        "x/syncs/s.ts",
        "import { createSync } from 'nango';\nexport default createSync({\n  frequency: 'every 5s',\n  models: { M: { id: 'string' } },\n  exec: async () => {},\n});\n",
    )]);
    assert_problem(&d, "x/syncs/s.ts", 1, "too frequent");
    let compiled = compile(project(&[(
        "x/syncs/s.ts",
        "import { createSync } from 'nango';\nconst f = 'every ' + 'hour';\nexport default createSync({\n  frequency: f,\n  models: { M: { id: 'string' } },\n  exec: async () => {},\n});\n",
    )]))
    .unwrap();
    assert_eq!(
        compiled.functions[0].config.sync().unwrap().frequency_secs,
        3600
    );
}

#[test]
fn import_errors_name_the_specifier() {
    let d = problems(&with(
        "github/syncs/repos.ts",
        "import axios from 'axios';\nimport { x } from '../helpers/missing';\nimport fs from 'node:fs';\nimport { y } from '../../../outside';\nexport default async function () { return [axios, x, fs, y]; }\n",
    ));
    assert_problem(&d, "github/syncs/repos.ts", 1, "`axios`");
    assert_problem(&d, "github/syncs/repos.ts", 2, "no such file");
    assert_problem(&d, "github/syncs/repos.ts", 3, "`node:fs`");
    assert_problem(&d, "github/syncs/repos.ts", 4, "outside the project");
    let d = problems(&with(
        "github/syncs/repos.ts",
        "import { GithubRepo } from '../../models';\nexport default async function () { return GithubRepo; }\n",
    ));
    assert_problem(&d, "github/syncs/repos.ts", 1, "import type");
}

#[test]
fn config_errors_name_the_problem() {
    let d = problems(&with(
        "nango.yaml",
        "integrations:\n  github:\n    syncs:\n      issues:\n        runs: every hour\n        output: Missing\n        frequncy: 1\n",
    ));
    assert_problem(&d, "nango.yaml", 7, "unknown field `frequncy`");
    assert_problem(&d, "nango.yaml", 5, "`Missing` is not defined");

    let d = problems(&[(
        "nango.yaml",
        "integrations:\n  github:\n    syncs:\n      gone:\n        runs: every hour\n        output: M\nmodels:\n  M:\n    id: string\n",
    )]);
    assert_problem(&d, "nango.yaml", 4, "does not exist");

    let d = problems(&[("x/syncs/plain.ts", "export default async function () {}\n")]);
    assert_problem(&d, "x/syncs/plain.ts", 1, "no configuration");

    let d = problems(&[("x/actions/none.ts", "export const a = 1;\n")]);
    assert_problem(&d, "x/actions/none.ts", 1, "no default export");

    let d = problems(&[("nango.yaml", "integrations: [\n")]);
    assert_problem(&d, "nango.yaml", 0, "not valid YAML");
}

#[test]
fn typescript_only_syntax_is_stripped_and_newer_syntax_explained() {
    let compiled = compile(project(&[(
        "x/actions/a.ts",
        "import { createAction } from 'nango';\nenum Color { Red, Green }\nnamespace NS { export const a = 1; }\nclass Box { #v = 1; get v(): number { return this.#v; } }\nexport default createAction({ exec: async () => [Color.Green, NS.a, new Box().v] });\n",
    )]))
    .unwrap();
    let (bundle, _) = bundle_of(&compiled, "a");
    let js = &bundle.modules["x/actions/a.js"];
    assert!(!js.contains("enum ") && !js.contains(": number"), "{js}");

    let d = problems(&[(
        "x/actions/a.ts",
        "import { createAction } from 'nango';\nexport default createAction({ exec: async () => { using r = { [Symbol.dispose]() {} }; return 1; } });\n",
    )]);
    assert_problem(&d, "x/actions/a.ts", 1, "`using` declarations");
}
