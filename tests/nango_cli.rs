//! Nango's own CLI (`nango` 0.71.10 from npm, unmodified) against a real Lasso api: in a copy of
//! tests/fixtures/nango-cli-project (a zero-yaml project: root index.ts, a sync with a zod
//! model, an action), `nango deploy dev` compiles the TypeScript itself and deploys through
//! `POST /sync/deploy/confirmation` and `POST /sync/deploy`; the sync then runs in Lasso's
//! runner from the CLI's CommonJS bundle and saves records, the action answers
//! `POST /action/trigger`, and `nango dryrun` of both runs (reading `GET /connection/:id`).
//! The provider API is a loopback server of the test; the CLI reaches nothing else (no version
//! check, no dependency install; its telemetry goes to the Lasso api, which drops it).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::routing::get;
use lasso_cli::workers::Workers;
use lasso_services::ConnectionRowId;
use lasso_services::queue::{TaskKind, TaskState};
use lasso_services::records::{self, Scope};
use lasso_tests::fakehub::{Setup, Upstream, catalog, run};
use lasso_tests::*;
use serde_json::{Value, json};

/// The provider: three tickets to list, and ticket creation (recording what it was sent).
fn provider(created: Arc<Mutex<Vec<Value>>>) -> axum::Router {
    axum::Router::new().route(
        "/tickets",
        get(|| async {
            Json(json!({"tickets": [
                {"id": "t1", "subject": "First", "priority": 1},
                {"id": "t2", "subject": "Second"},
                {"id": "t3", "subject": "Third", "priority": 3},
            ]}))
        })
        .post(move |Json(body): Json<Value>| {
            let created = created.clone();
            async move {
                created.lock().unwrap().push(body);
                Json(json!({"id": "t-new"}))
            }
        }),
    )
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// The fixture project in a temp dir, as `nango init` leaves one: a `.nango` folder, and the
/// project's dependencies (nango, zod) from the test tools' node_modules.
fn project() -> PathBuf {
    let cli = node_modules().join("nango/dist/index.js");
    assert!(
        cli.exists(),
        "{} is missing; run `scripts/bootstrap --with-node`",
        cli.display()
    );
    let dir = temp_dir("nango-cli");
    let project = dir.join("nango-integrations");
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/nango-cli-project"),
        &project,
    );
    std::fs::create_dir_all(project.join(".nango")).unwrap();
    std::os::unix::fs::symlink(node_modules(), project.join("node_modules")).unwrap();
    std::fs::create_dir_all(dir.join("home")).unwrap();
    project
}

/// Runs the CLI in `project` against `host`; its status and output (stdout then stderr).
async fn nango(project: &Path, host: &str, key: &str, args: &[&str]) -> (bool, String) {
    let home = project.parent().unwrap().join("home");
    let out = tokio::process::Command::new("node")
        .arg(node_modules().join("nango/dist/index.js"))
        .args(args)
        .current_dir(project)
        .env("NANGO_HOSTPORT", host)
        .env("NANGO_SECRET_KEY_DEV", key)
        // No version check or dependency install (both would reach npm), and the CLI's state
        // (its device id) under the test's own directory.
        .env("NANGO_CLI_UPGRADE_MODE", "ignore")
        .env("NANGO_CLI_DEPENDENCY_UPDATE", "false")
        .env("NANGO_DEPLOY_AUTO_CONFIRM", "true")
        .env("CI", "true")
        .env("HOME", &home)
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env("NO_COLOR", "1")
        .env("FORCE_COLOR", "0")
        .kill_on_drop(true)
        .output()
        .await
        .expect("run node (is Node.js installed?)");
    let output = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Shown with the test's output when it fails.
    println!("$ nango {}\n{output}", args.join(" "));
    (out.status.success(), output)
}

#[tokio::test]
async fn nangos_cli_deploys_a_zero_yaml_project_and_dry_runs_it() {
    let created = Arc::new(Mutex::new(Vec::new()));
    let base = serve(provider(created.clone())).await;
    let app = TestApp::builder()
        .setting("LASSO_PROVIDERS_FILE", catalog(&base).display().to_string())
        .setting("LASSO_SCRIPT_TIMEOUT_SECS", "60")
        .environment("dev")
        .start()
        .await;
    let (ctx, api, host, key) = (
        app.ctx.clone(),
        app.api.clone(),
        app.base.clone(),
        app.key.clone(),
    );
    let (status, body) = api
        .post(
            "/integrations",
            json!({"provider": "fakehub", "unique_key": "fakehub"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = api
        .post(
            "/connections",
            json!({"provider_config_key": "fakehub", "connection_id": "acme",
                   "credentials": {"type": "API_KEY", "apiKey": "fk_live_secret"}}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let connection = ConnectionRowId(body["id"].as_i64().unwrap());
    let project = project();

    let (ok, output) = nango(&project, &host, &key, &["deploy", "dev", "--auto-confirm"]).await;
    assert!(ok, "nango deploy failed:\n{output}");
    // The plan from the confirmation, then what was deployed.
    assert!(
        output.contains("fakehub → cli-tickets") && output.contains("fakehub → cli-create-ticket"),
        "{output}"
    );
    assert!(
        output.contains("cli-tickets@v1.0.0") && output.contains("cli-create-ticket@v1.0.0"),
        "{output}"
    );

    let (status, body) = api.get("/integrations/fakehub/functions").await;
    assert_eq!(status, 200, "{body}");
    let functions = body["data"].as_array().unwrap();
    assert_eq!(functions.len(), 2, "{body}");
    for f in functions {
        assert_eq!(f["deployed_with"], "nango", "{f}");
    }
    let sync = functions
        .iter()
        .find(|f| f["name"] == "cli-tickets")
        .unwrap();
    assert_eq!(sync["runs"], "every hour");
    assert_eq!(sync["returns"], json!(["CliTicket"]));
    assert_eq!(
        sync["json_schema"]["definitions"]["CliTicket"]["required"],
        json!(["id", "subject"])
    );

    // Deploying the same project again changes nothing.
    let (ok, output) = nango(&project, &host, &key, &["deploy", "dev", "--auto-confirm"]).await;
    assert!(ok, "the second nango deploy failed:\n{output}");
    let (status, body) = api.get("/integrations/fakehub/functions").await;
    assert_eq!(status, 200);
    assert_eq!(
        body["data"],
        json!(functions),
        "a redeploy made new versions"
    );

    // The sync runs from the CLI's CommonJS bundle (require("zod")) and saves the records.
    let s = Setup {
        env_id: app.env.id,
        app,
        connection,
        upstream: Arc::new(Upstream::default()),
        workers: Workers::start(ctx.clone()),
    };
    let task = run(&s, TaskKind::Sync, "cli-tickets", None).await;
    assert_eq!(task.state, TaskState::Succeeded, "{:?}", task.error);
    let scope = Scope::new(connection, "CliTicket", None);
    assert_eq!(records::count(&ctx.db, &scope).await.unwrap(), 3);

    // The action answers through the public API.
    let response = api
        .http
        .post(format!("{host}/action/trigger"))
        .bearer_auth(&key)
        .header("Connection-Id", "acme")
        .header("Provider-Config-Key", "fakehub")
        .json(&json!({"action_name": "cli-create-ticket", "input": {"subject": "From Lasso"}}))
        .send()
        .await
        .unwrap();
    let status = response.status();
    let answer: Value = response.json().await.unwrap();
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer, json!({"id": "t-new", "subject": "From Lasso"}));
    assert_eq!(
        created.lock().unwrap().as_slice(),
        &[json!({"subject": "From Lasso"})]
    );

    // `nango dryrun` runs both locally, reading the connection through the singular route.
    let (ok, output) = nango(
        &project,
        &host,
        &key,
        &["dryrun", "cli-tickets", "acme", "-e", "dev"],
    )
    .await;
    assert!(ok, "nango dryrun of the sync failed:\n{output}");
    assert!(
        output.contains("t1") && output.contains("Third"),
        "the dry run shows no records:\n{output}"
    );
    let (ok, output) = nango(
        &project,
        &host,
        &key,
        &[
            "dryrun",
            "cli-create-ticket",
            "acme",
            "-e",
            "dev",
            "--input",
            r#"{"subject":"Dry"}"#,
        ],
    )
    .await;
    assert!(ok, "nango dryrun of the action failed:\n{output}");
    assert!(output.contains("t-new"), "{output}");

    // A plan that drops everything names what would go, with the sync's connections and its
    // model, and changes nothing.
    let (status, plan) = api
        .post(
            "/sync/deploy/confirmation",
            json!({"flowConfigs": [], "reconcile": false, "deployMode": "all", "debug": false}),
        )
        .await;
    assert_eq!(status, 200, "{plan}");
    assert_eq!(
        plan["deletedSyncs"],
        json!([{"name": "cli-tickets", "providerConfigKey": "fakehub", "auto_start": true,
                "connections": 1}])
    );
    assert_eq!(
        plan["deletedActions"],
        json!([{"name": "cli-create-ticket", "providerConfigKey": "fakehub"}])
    );
    assert_eq!(plan["deletedModels"], json!(["CliTicket"]));
    assert_eq!(plan["newSyncs"], json!([]));
    let (_, body) = api.get("/integrations/fakehub/functions").await;
    assert_eq!(body["data"].as_array().unwrap().len(), 2, "{body}");

    // A bad flowConfig is refused naming its field; nothing is deployed.
    let (status, body) = api
        .post(
            "/sync/deploy",
            json!({"flowConfigs": [{"syncName": "too-often", "providerConfigKey": "fakehub",
                   "type": "sync", "models": ["CliTicket"], "runs": "every 5 seconds",
                   "fileBody": {"js": "module.exports = {};", "ts": ""}}],
                   "reconcile": true, "deployMode": "all"}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.to_string().contains("flowConfigs[0].runs"), "{body}");
    let (_, body) = api.get("/integrations/fakehub/functions").await;
    assert_eq!(body["data"].as_array().unwrap().len(), 2, "{body}");

    // Telemetry is accepted and dropped.
    let response = api
        .http
        .post(format!("{host}/cli/telemetry"))
        .json(&json!({"deviceId": "d", "event": "cli:deploy", "ephemeral": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    s.workers.stop().await;
}
