//! `lasso deploy` end to end: a sample project (tests/fixtures/github-project: two syncs in
//! nango.yaml, an action in the object form, a shared helper) compiled and deployed through
//! the real api, on the directory script store and on S3 (moto); listed, redeployed unchanged,
//! changed, shrunk, and broken in several ways — a broken deploy changes nothing.

use lasso_services::EnvironmentId;
use std::path::{Path, PathBuf};

use lasso_cli::deploy as cli;
use lasso_services::scripts::store;
use lasso_services::scripts::{self, Bundle, DeployOutcome, DeployRequest, FunctionType, Trigger};
use lasso_services::{Context, Error, environments, integrations};
use lasso_tests::*;
use serde_json::{Value, json};

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/github-project");

/// A writable copy of the sample project.
fn sample_project() -> PathBuf {
    fn copy(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            let target = to.join(entry.file_name());
            if entry.file_type().unwrap().is_dir() {
                copy(&entry.path(), &target);
            } else {
                std::fs::copy(entry.path(), target).unwrap();
            }
        }
    }
    let dir = temp_dir("lasso-project");
    copy(Path::new(FIXTURE), &dir);
    dir
}

struct Setup {
    ctx: Context,
    api: Api,
    base: String,
    key: String,
    environment_id: EnvironmentId,
    _db: TestDb,
}

async fn setup(ctx: Context, db: TestDb) -> Setup {
    let (env, key) = environments::create(&ctx.db, "deploy").await.unwrap();
    let base = serve_api(ctx.clone()).await;
    let api = Api::new(&base, &key);
    let (status, body) = api
        .post(
            "/integrations",
            json!({"provider": "github", "unique_key": "github"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    Setup {
        ctx,
        api,
        base,
        key,
        environment_id: env.id,
        _db: db,
    }
}

impl Setup {
    async fn deploy(&self, dir: &Path) -> anyhow::Result<DeployOutcome> {
        let project = cli::compile(dir)?;
        cli::deploy(project, &self.base, &self.key, None).await
    }

    async fn stored_keys(&self) -> Vec<String> {
        self.ctx.scripts.list("bundles/").await.unwrap()
    }

    async fn version_count(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM function_versions")
            .fetch_one(&self.ctx.db)
            .await
            .unwrap()
    }

    /// (type, name, bundle key) of every active function of `github`, sorted.
    async fn active(&self) -> Vec<(FunctionType, String, String)> {
        let github = integrations::get(&self.ctx.db, self.environment_id, "github")
            .await
            .unwrap();
        let mut active: Vec<_> = store::list_active(&self.ctx.db, github.id)
            .await
            .unwrap()
            .into_iter()
            .map(|f| (f.function_type, f.name, f.bundle_key))
            .collect();
        active.sort();
        active
    }
}

fn names(refs: &[scripts::DeployedRef]) -> Vec<&str> {
    let mut names: Vec<_> = refs.iter().map(|r| r.name.as_str()).collect();
    names.sort();
    names
}

/// The whole life of a project against one store.
async fn deploy_lifecycle(s: &Setup) {
    let dir = sample_project();

    // First deploy: everything is new, one bundle per function in the store.
    let first = s.deploy(&dir).await.unwrap();
    assert_eq!(names(&first.created), ["create-issue", "issues", "repos"]);
    assert!(first.updated.is_empty() && first.unchanged.is_empty() && first.deleted.is_empty());
    let keys = s.stored_keys().await;
    assert_eq!(keys.len(), 3, "{keys:?}");
    for r in &first.created {
        assert!(keys.contains(&r.bundle_key), "{} not stored", r.bundle_key);
        assert!(r.bundle_key.starts_with("bundles/") && r.bundle_key.ends_with(".json"));
    }

    // Listed in Nango's shape.
    let (status, list) = s.api.get("/integrations/github/functions").await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(
        list["pagination"],
        json!({"total": 3, "page": 0, "limit": 20})
    );
    let data = list["data"].as_array().unwrap();
    let by_name = |name: &str| data.iter().find(|f| f["name"] == name).unwrap().clone();
    let issues = by_name("issues");
    assert_eq!(issues["type"], "sync");
    assert_eq!(issues["runs"], "every 30 minutes");
    assert_eq!(issues["returns"], json!(["GithubIssue"]));
    assert_eq!(issues["auto_start"], true);
    assert_eq!(issues["track_deletes"], false);
    assert_eq!(issues["scopes"], json!(["repo"]));
    assert_eq!(issues["enabled"], true);
    assert_eq!(issues["source"], "repo");
    assert!(issues["last_deployed"].is_string() && issues["id"].is_number());
    assert_eq!(by_name("repos")["track_deletes"], true);
    let action = by_name("create-issue");
    assert_eq!(action["type"], "action");
    assert_eq!(action["description"], "Open an issue in a repository");
    assert_eq!(action["version"], "1.0.0");
    assert!(action.get("runs").is_none());

    let (_, only_actions) = s
        .api
        .get("/integrations/github/functions?type=action")
        .await;
    assert_eq!(only_actions["data"].as_array().unwrap().len(), 1);
    let (_, searched) = s
        .api
        .get("/integrations/github/functions?search=REP&limit=1&page=0")
        .await;
    assert_eq!(searched["data"][0]["name"], "repos");
    assert_eq!(searched["pagination"]["total"], 1);
    let (status, one) = s
        .api
        .get("/integrations/github/functions/issues?type=sync")
        .await;
    assert_eq!(status, 200, "{one}");
    assert_eq!(one["data"]["name"], "issues");
    let (status, missing) = s.api.get("/integrations/github/functions/nope").await;
    assert_eq!(status, 404, "{missing}");
    let (status, unknown) = s.api.get("/integrations/gitlab/functions").await;
    assert_eq!(status, 404);
    assert_eq!(unknown["error"]["code"], "unknown_provider_config");

    // What the runner loads: the active function, its config and its bundle.
    let issues = store::get_active(
        &s.ctx.db,
        s.environment_id,
        "github",
        FunctionType::Sync,
        "issues",
    )
    .await
    .unwrap();
    let Trigger::Sync(sync) = &issues.config.trigger else {
        panic!("issues is a sync");
    };
    assert_eq!(sync.frequency_secs, 1800);
    let bundle: Bundle = store::load_bundle(s.ctx.scripts.as_ref(), &issues)
        .await
        .unwrap();
    assert_eq!(bundle.entry, "github/syncs/issues.js");
    assert!(bundle.modules.contains_key("github/helpers/paging.js"));

    // Unchanged: same keys, no new rows, nothing new stored.
    let versions = s.version_count().await;
    let active_before = s.active().await;
    let again = s.deploy(&dir).await.unwrap();
    assert_eq!(names(&again.unchanged), ["create-issue", "issues", "repos"]);
    assert!(again.created.is_empty() && again.updated.is_empty() && again.deleted.is_empty());
    assert_eq!(s.stored_keys().await, keys);
    assert_eq!(s.version_count().await, versions);
    assert_eq!(s.active().await, active_before);

    // One script changes: one new version active, the old one kept.
    let issues_ts = dir.join("github/syncs/issues.ts");
    let source = std::fs::read_to_string(&issues_ts).unwrap();
    std::fs::write(
        &issues_ts,
        source.replace("'/issues'", "'/issues?filter=all'"),
    )
    .unwrap();
    let changed = s.deploy(&dir).await.unwrap();
    assert_eq!(names(&changed.updated), ["issues"]);
    assert_eq!(names(&changed.unchanged), ["create-issue", "repos"]);
    assert_eq!(s.stored_keys().await.len(), 4);
    let github = integrations::get(&s.ctx.db, s.environment_id, "github")
        .await
        .unwrap();
    let history = store::history(&s.ctx.db, github.id, FunctionType::Sync, "issues")
        .await
        .unwrap();
    assert_eq!(history.len(), 2);
    assert!(history[0].active && !history[1].active);
    assert_eq!(history[0].bundle_key, changed.updated[0].bundle_key);
    assert_eq!(history[1].bundle_key, issues.bundle_key);
    let active_after_change = s.active().await;

    // Broken projects deploy nothing and leave the active versions as they were.
    let broken = sample_project();
    std::fs::write(
        broken.join("github/helpers/paging.ts"),
        "export async function* pages(nango: any) {\n    yield [;\n}\n",
    )
    .unwrap();
    let err = s.deploy(&broken).await.unwrap_err().to_string();
    assert!(err.contains("nothing was deployed"), "{err}");
    match lasso_compile::compile(&broken) {
        Err(Error::Compile(d)) => {
            assert_eq!(d.len(), 1, "{d:?}");
            assert_eq!(
                (d[0].file.as_str(), d[0].line),
                ("github/helpers/paging.ts", 2)
            );
        }
        other => panic!("expected a compile error, got {other:?}"),
    }

    let bad_frequency = sample_project();
    let yaml = std::fs::read_to_string(bad_frequency.join("nango.yaml")).unwrap();
    std::fs::write(
        bad_frequency.join("nango.yaml"),
        yaml.replace("every hour", "every 10 seconds"),
    )
    .unwrap();
    match lasso_compile::compile(&bad_frequency) {
        Err(Error::Compile(d)) => {
            assert_eq!((d[0].file.as_str(), d[0].line), ("nango.yaml", 13), "{d:?}");
            assert!(d[0].message.contains("too frequent"), "{d:?}");
        }
        other => panic!("expected a compile error, got {other:?}"),
    }

    // The server checks too: a request built by hand with a bad frequency, an unknown
    // integration, a corrupt bundle.
    let mut project = lasso_compile::compile(&dir).unwrap();
    let repos = project
        .functions
        .iter_mut()
        .find(|f| f.name == "repos")
        .unwrap();
    if let Trigger::Sync(sync) = &mut repos.config.trigger {
        sync.runs = "every 5s".into();
        sync.frequency_secs = 5;
    }
    let (status, body) = post_deploy(&s.api, &project, None).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        body["error"]["errors"][0]["field"],
        "functions[1].config.runs"
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("too frequent")
    );

    let mut project = lasso_compile::compile(&dir).unwrap();
    project.functions[0].integration = "gitlab".into();
    let (status, body) = post_deploy(&s.api, &project, None).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"]["code"], "unknown_provider_config");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("`gitlab`")
    );

    let mut project = lasso_compile::compile(&dir).unwrap();
    project.functions[2].bundle = "{\"format\": 1}".into();
    let (status, body) = post_deploy(&s.api, &project, None).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["errors"][0]["field"], "functions[2].bundle");

    let (status, body) = s
        .api
        .post(
            "/scripts/deploy",
            json!({"functions": [], "bundle": "x".repeat(7 * 1024 * 1024)}),
        )
        .await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["error"]["code"], "payload_too_large");

    assert_eq!(s.active().await, active_after_change);
    assert_eq!(s.stored_keys().await.len(), 4);

    // A project that no longer has the action removes it (kept as history).
    std::fs::remove_file(dir.join("github/actions/create-issue.ts")).unwrap();
    let shrunk = s.deploy(&dir).await.unwrap();
    assert_eq!(names(&shrunk.deleted), ["create-issue"]);
    assert_eq!(names(&shrunk.unchanged), ["issues", "repos"]);
    let (_, list) = s.api.get("/integrations/github/functions").await;
    assert_eq!(list["pagination"]["total"], 2);
    let old_action = store::history(&s.ctx.db, github.id, FunctionType::Action, "create-issue")
        .await
        .unwrap();
    assert_eq!(old_action.len(), 1);
    assert!(!old_action[0].active);
}

async fn post_deploy(
    api: &Api,
    project: &scripts::CompiledProject,
    integration: Option<&str>,
) -> (u16, Value) {
    let request = DeployRequest {
        integration: integration.map(str::to_string),
        functions: project.functions.clone(),
    };
    api.post("/scripts/deploy", serde_json::to_value(request).unwrap())
        .await
}

#[tokio::test]
async fn deploy_on_the_directory_store() {
    let db = fresh_database().await;
    let ctx = local_context(&db).await;
    let s = setup(ctx, db).await;
    deploy_lifecycle(&s).await;
}

#[tokio::test]
async fn deploy_on_s3() {
    let db = fresh_database().await;
    let ctx = aws_context(&db).await;
    let s = setup(ctx, db).await;
    deploy_lifecycle(&s).await;
}

#[tokio::test]
async fn deploy_scoped_to_one_integration_leaves_the_others() {
    let db = fresh_database().await;
    let ctx = local_context(&db).await;
    let s = setup(ctx, db).await;
    let (status, body) = s
        .api
        .post(
            "/integrations",
            json!({"provider": "github", "unique_key": "github-2"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let dir = sample_project();
    s.deploy(&dir).await.unwrap();

    // Deploying only github-2 (a project with one action) does not remove github's functions.
    let other = temp_dir("lasso-project");
    std::fs::create_dir_all(other.join("github-2/actions")).unwrap();
    std::fs::write(
        other.join("github-2/actions/ping.ts"),
        "import { createAction } from 'nango';\nexport default createAction({ exec: async () => 'pong' });\n",
    )
    .unwrap();
    let project = cli::compile(&other).unwrap();
    let outcome = cli::deploy(project, &s.base, &s.key, Some("github-2".into()))
        .await
        .unwrap();
    assert_eq!(names(&outcome.created), ["ping"]);
    assert!(outcome.deleted.is_empty());
    assert_eq!(s.active().await.len(), 3);

    // Without the scope, the same project replaces everything in the environment.
    let project = cli::compile(&other).unwrap();
    let outcome = cli::deploy(project, &s.base, &s.key, None).await.unwrap();
    assert_eq!(names(&outcome.unchanged), ["ping"]);
    assert_eq!(names(&outcome.deleted), ["create-issue", "issues", "repos"]);
    assert!(s.active().await.is_empty());
}
