//! The dashboard under `/ui/`: sign-in and its cookie, CSRF, environment isolation, the log
//! sink's look-up of one operation, and the whole flow in headless Chromium
//! (tests/browser/dashboard.mjs).

use lasso_services::EnvironmentId;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::routing::{get, post};
use lasso_cli::workers::Workers;
use lasso_services::adapters::LogSink;
use lasso_services::adapters::log_sink::{OpenSearchLogSink, PostgresLogSink};
use lasso_services::config::OpenSearchAuth;
use lasso_services::logs::{Level, MessageKind, OperationKind, OperationLog, OperationState};
use lasso_services::{Context, environments};
use lasso_tests::browser;
use lasso_tests::{
    Api, config, elasticsearch_url, eventually, fakehub, fresh_database, serve, serve_api, unique,
};
use serde_json::{Value, json};

/// A dashboard client without a browser: keeps the session cookie by hand.
struct Ui {
    base: String,
    http: reqwest::Client,
    cookie: String,
    csrf: String,
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn set_cookies(response: &reqwest::Response) -> Vec<String> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect()
}

fn cookie_value(set_cookie: &str) -> &str {
    set_cookie.split(';').next().unwrap()
}

/// The value of `<input ... name="NAME" value="...">` in `html`.
fn input_value(html: &str, name: &str) -> String {
    let at = html
        .find(&format!("name=\"{name}\""))
        .unwrap_or_else(|| panic!("no input {name} in {html}"));
    let rest = &html[at..];
    let start = rest.find("value=\"").unwrap() + 7;
    rest[start..start + rest[start..].find('"').unwrap()].to_string()
}

impl Ui {
    async fn sign_in(base: &str, key: &str) -> Self {
        let http = no_redirects();
        let page = http.get(format!("{base}/ui/signin")).send().await.unwrap();
        let signin_cookie = cookie_value(&set_cookies(&page)[0]).to_string();
        let html = page.text().await.unwrap();
        let nonce = input_value(&html, "_csrf");
        let response = http
            .post(format!("{base}/ui/signin"))
            .header("cookie", &signin_cookie)
            .form(&[
                ("_csrf", nonce.as_str()),
                ("secret_key", key),
                ("next", "/ui/settings"),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 303);
        assert_eq!(response.headers()["location"], "/ui/settings");
        let cookies = set_cookies(&response);
        let session = cookies
            .iter()
            .find(|c| c.starts_with("lasso_session="))
            .expect("a session cookie");
        let cookie = cookie_value(session).to_string();
        let settings = http
            .get(format!("{base}/ui/settings"))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        Ui {
            base: base.to_string(),
            http,
            csrf: input_value(&settings, "_csrf"),
            cookie,
        }
    }

    async fn get(&self, path: &str) -> (u16, String) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .header("cookie", &self.cookie)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    async fn post(&self, path: &str, form: &[(&str, &str)]) -> (u16, String) {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .header("cookie", &self.cookie)
            .form(form)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }
}

async fn plain_api() -> (Context, String, String) {
    let db = fresh_database().await;
    let ctx = Context::build(config(&db, &[]), None).unwrap();
    let (_, key) = environments::create(&ctx.db, "alpha").await.unwrap();
    let base = serve_api(ctx.clone()).await;
    (ctx, base, key)
}

#[tokio::test]
async fn the_session_cookie_is_http_only_strict_scoped_and_secure_off_localhost() {
    let (_ctx, base, key) = plain_api().await;
    let http = no_redirects();
    for (proto, secure) in [(None, false), (Some("https"), true)] {
        let mut request = http.get(format!("{base}/ui/signin"));
        if let Some(p) = proto {
            request = request.header("x-forwarded-proto", p);
        }
        let page = request.send().await.unwrap();
        let signin_cookie = set_cookies(&page)[0].clone();
        let nonce = input_value(&page.text().await.unwrap(), "_csrf");
        let mut request = http
            .post(format!("{base}/ui/signin"))
            .header("cookie", cookie_value(&signin_cookie))
            .form(&[("_csrf", nonce.as_str()), ("secret_key", key.as_str())]);
        if let Some(p) = proto {
            request = request.header("x-forwarded-proto", p);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.headers()["cache-control"], "no-store");
        let cookies = set_cookies(&response);
        let session = cookies
            .iter()
            .find(|c| c.starts_with("lasso_session="))
            .unwrap();
        for part in ["HttpOnly", "SameSite=Strict", "Path=/ui", "Max-Age=43200"] {
            assert!(session.contains(part), "{part} missing from {session}");
        }
        assert_eq!(session.contains("Secure"), secure, "{session}");
        assert!(!session.contains(&key), "the key never goes into a cookie");
    }
}

/// Clickjacking: a site that framed a dashboard page would have the signed-in user's cookie
/// go with it, and could trick them into clicking its buttons (rotate a key, delete an
/// integration). No page of the dashboard may be framed.
#[tokio::test]
async fn no_other_site_may_frame_the_dashboard() {
    let (_ctx, base, key) = plain_api().await;
    let ui = Ui::sign_in(&base, &key).await;
    for path in ["/ui/signin", "/ui/", "/ui/settings", "/ui/integrations"] {
        let response = ui
            .http
            .get(format!("{base}{path}"))
            .header("cookie", &ui.cookie)
            .send()
            .await
            .unwrap();
        let headers = response.headers();
        assert_eq!(
            headers
                .get("content-security-policy")
                .map(|v| v.to_str().unwrap()),
            Some("frame-ancestors 'none'"),
            "{path}"
        );
        assert_eq!(
            headers.get("x-frame-options").map(|v| v.to_str().unwrap()),
            Some("DENY"),
            "{path}"
        );
    }
}

#[tokio::test]
async fn a_wrong_key_or_a_forged_sign_in_opens_nothing() {
    let (_ctx, base, key) = plain_api().await;
    let http = no_redirects();
    // No sign-in cookie to match the form's token: a cross-site post, refused.
    let forged = http
        .post(format!("{base}/ui/signin"))
        .form(&[("_csrf", "guess"), ("secret_key", key.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    assert!(set_cookies(&forged).is_empty());
    let page = http.get(format!("{base}/ui/signin")).send().await.unwrap();
    let signin_cookie = cookie_value(&set_cookies(&page)[0]).to_string();
    let nonce = input_value(&page.text().await.unwrap(), "_csrf");
    let wrong = http
        .post(format!("{base}/ui/signin"))
        .header("cookie", &signin_cookie)
        .form(&[("_csrf", nonce.as_str()), ("secret_key", "lasso_sk_wrong")])
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 303);
    assert!(
        wrong.headers()["location"]
            .to_str()
            .unwrap()
            .starts_with("/ui/signin?")
    );
    assert!(
        set_cookies(&wrong)
            .iter()
            .all(|c| !c.starts_with("lasso_session="))
    );
    let location = wrong.headers()["location"].to_str().unwrap().to_string();
    let page = http.get(format!("{base}{location}")).send().await.unwrap();
    assert!(
        page.text()
            .await
            .unwrap()
            .contains("That key opens no environment.")
    );
    // The page shows fixed texts only: a crafted link's words never appear.
    let crafted = http
        .get(format!(
            "{base}/ui/signin?error=Paste%20your%20key%20at%20evil.example"
        ))
        .send()
        .await
        .unwrap();
    assert!(!crafted.text().await.unwrap().contains("evil.example"));
    // Signed out, a page sends the browser to sign in and back.
    let (status, location) = {
        let r = http
            .get(format!("{base}/ui/logs?q=x"))
            .send()
            .await
            .unwrap();
        (
            r.status(),
            r.headers()["location"].to_str().unwrap().to_string(),
        )
    };
    assert_eq!(status, 303);
    assert_eq!(location, "/ui/signin?next=/ui/logs%3Fq%3Dx");
}

#[tokio::test]
async fn the_json_api_never_accepts_the_session_cookie() {
    let (_ctx, base, key) = plain_api().await;
    let ui = Ui::sign_in(&base, &key).await;
    for path in ["/integrations", "/connections", "/logs/operations"] {
        let r = ui
            .http
            .get(format!("{base}{path}"))
            .header("cookie", &ui.cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{path} accepted the cookie");
    }
}

#[tokio::test]
async fn state_changing_forms_need_the_sessions_csrf_token() {
    let (ctx, base, key) = plain_api().await;
    let ui = Ui::sign_in(&base, &key).await;
    let other = Ui::sign_in(&base, &key).await;
    assert_ne!(ui.csrf, other.csrf, "each session has its own token");
    for form in [
        vec![("grace_secs", "0")],
        vec![("grace_secs", "0"), ("_csrf", other.csrf.as_str())],
    ] {
        let (status, body) = ui.post("/ui/settings/rotate-key", &form).await;
        assert_eq!(status, 403, "{body}");
    }
    assert!(
        environments::find_by_secret_key(&ctx.db, &key)
            .await
            .unwrap()
            .is_some(),
        "nothing was rotated"
    );
    let (status, _) = ui.post("/ui/signout", &[]).await;
    assert_eq!(status, 403, "sign-out needs the token too");
    let (status, _) = ui.post("/ui/signout", &[("_csrf", &ui.csrf)]).await;
    assert_eq!(status, 303);
    let (status, _) = ui.get("/ui/settings").await;
    assert_eq!(status, 303, "the session ended with sign-out");
}

#[tokio::test]
async fn a_session_never_reaches_another_environments_data() {
    let db = fresh_database().await;
    let providers = fakehub::catalog("http://127.0.0.1:9");
    let ctx = Context::build(
        config(
            &db,
            &[("LASSO_PROVIDERS_FILE", providers.display().to_string())],
        ),
        None,
    )
    .unwrap();
    let (_, key_a) = environments::create(&ctx.db, "alpha").await.unwrap();
    let (env_b, key_b) = environments::create(&ctx.db, "bravo").await.unwrap();
    let base = serve_api(ctx.clone()).await;
    let api_b = Api::new(&base, &key_b);
    api_b
        .post(
            "/integrations",
            json!({"provider": "fakehub", "unique_key": "fakehub"}),
        )
        .await;
    let (status, _) = api_b
        .post(
            "/connections",
            json!({"provider_config_key": "fakehub", "connection_id": "bravo-only",
                   "credentials": {"type": "API_KEY", "apiKey": "fk_bravo_secret"}}),
        )
        .await;
    assert_eq!(status, 201);
    let mut log = OperationLog::start(
        env_b.id,
        OperationKind::Sync,
        Some("fakehub"),
        Some("bravo-only"),
        Some("tickets"),
    );
    log.message(
        Level::Info,
        MessageKind::Log,
        "bravo's own words",
        json!({}),
    );
    let op_b = log.id();
    ctx.logs
        .record(log.finish(OperationState::Success, None))
        .await;

    let a = Ui::sign_in(&base, &key_a).await;
    for path in [
        "/ui/connections/fakehub/bravo-only".to_string(),
        "/ui/connections/fakehub/bravo-only/records?model=Ticket".to_string(),
        format!("/ui/logs/{op_b}"),
        "/ui/integrations/fakehub".to_string(),
    ] {
        let (status, body) = a.get(&path).await;
        assert_eq!(status, 404, "{path}: {body}");
        assert!(!body.contains("fk_bravo_secret") && !body.contains("bravo's own words"));
    }
    for path in [
        "/ui/connections",
        "/ui/logs",
        "/ui/integrations",
        "/ui/logs?q=bravo",
    ] {
        let (status, body) = a.get(path).await;
        assert_eq!(status, 200, "{path}");
        assert!(
            !body.contains("bravo-only"),
            "{path} shows bravo's connection"
        );
    }
    let (status, _) = a
        .post(
            "/ui/connections/fakehub/bravo-only/syncs/tickets",
            &[("_csrf", &a.csrf), ("action", "trigger")],
        )
        .await;
    assert_eq!(status, 404);
    let b = Ui::sign_in(&base, &key_b).await;
    let (status, body) = b.get("/ui/connections/fakehub/bravo-only").await;
    assert_eq!(status, 200);
    assert!(body.contains("bravo-only") && !body.contains("fk_bravo_secret"));
}

#[tokio::test]
async fn a_browser_opening_the_root_is_sent_to_the_dashboard() {
    let (_ctx, base, _key) = plain_api().await;
    let http = no_redirects();
    let r = http
        .get(format!("{base}/"))
        .header("accept", "text/html,application/xhtml+xml")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/ui/");
    let r = http.get(format!("{base}/")).send().await.unwrap();
    assert_eq!(r.status(), 404, "API clients still get JSON");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_found");
    let css = http
        .get(format!("{base}/ui/assets/app.css"))
        .send()
        .await
        .unwrap();
    assert_eq!(css.status(), 200);
    assert!(
        css.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/css")
    );
}

async fn finds_one_operation(sink: Arc<dyn LogSink>) {
    let env = EnvironmentId(41);
    let mut log = OperationLog::start(
        env,
        OperationKind::Action,
        Some("fakehub"),
        Some("c1"),
        Some("shout"),
    );
    log.message(Level::Info, MessageKind::Log, "hello", json!({}));
    let id = log.id();
    sink.write(log.finish(OperationState::Failed, Some("boom")))
        .await
        .unwrap();
    let op = eventually(
        "the operation to be searchable",
        Duration::from_secs(10),
        || {
            let sink = sink.clone();
            async move { sink.operation(env, id).await.unwrap() }
        },
    )
    .await;
    assert_eq!(op.id, id);
    assert_eq!(op.error.as_deref(), Some("boom"));
    assert!(
        sink.operation(EnvironmentId(env.0 + 1), id)
            .await
            .unwrap()
            .is_none(),
        "another environment's"
    );
    assert!(
        sink.operation(env, uuid::Uuid::now_v7())
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn postgres_log_sink_finds_one_operation() {
    let db = fresh_database().await;
    finds_one_operation(Arc::new(PostgresLogSink::new(db.pool.clone()))).await;
}

#[tokio::test]
async fn opensearch_log_sink_finds_one_operation() {
    let prefix = unique("lasso-ui").to_lowercase();
    let sink =
        OpenSearchLogSink::new(&elasticsearch_url(), OpenSearchAuth::None, prefix, None).unwrap();
    finds_one_operation(Arc::new(sink)).await;
}

/// Each GET /tickets answers one ticket more than the last, so every run changes records.
async fn tickets(State(calls): State<Arc<AtomicUsize>>) -> Json<Value> {
    let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
    let tickets: Vec<Value> = (0..n)
        .map(|i| json!({"id": format!("t{i}"), "subject": format!("Ticket {i}")}))
        .collect();
    Json(json!({ "tickets": tickets }))
}

struct Flow {
    base: String,
    key_a: String,
    deploy_hook: String,
    workers: Workers,
}

/// An environment `dashboard` (empty: the browser creates its integration and connection) and
/// an environment `other` with connection `bravo-only`; the `lasso dev` workers; and a hook
/// the browser script calls to deploy tests/fixtures/dashboard-project, as `lasso deploy`
/// would, once its integration exists.
async fn flow() -> Flow {
    let calls = Arc::new(AtomicUsize::new(0));
    let upstream = serve(
        axum::Router::new()
            .route("/tickets", get(tickets))
            .with_state(calls),
    )
    .await;
    let providers = fakehub::catalog(&upstream);
    let db = fresh_database().await;
    let ctx = Context::build(
        config(
            &db,
            &[("LASSO_PROVIDERS_FILE", providers.display().to_string())],
        ),
        None,
    )
    .unwrap();
    let (env_a, key_a) = environments::create(&ctx.db, "dashboard").await.unwrap();
    let (_, key_b) = environments::create(&ctx.db, "other").await.unwrap();
    let base = serve_api(ctx.clone()).await;
    let api_b = Api::new(&base, &key_b);
    api_b
        .post(
            "/integrations",
            json!({"provider": "fakehub", "unique_key": "fakehub"}),
        )
        .await;
    let (status, body) = api_b
        .post(
            "/connections",
            json!({"provider_config_key": "fakehub", "connection_id": "bravo-only",
                   "credentials": {"type": "API_KEY", "apiKey": "fk_bravo_secret"}}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let deploy_ctx = ctx.clone();
    let deploy_hook = serve(axum::Router::new().route(
        "/deploy",
        post(move || {
            let ctx = deploy_ctx.clone();
            async move {
                let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                    .join("fixtures/dashboard-project");
                let result = match lasso_compile::compile(&dir) {
                    Ok(compiled) => lasso_services::scripts::deploy(
                        &ctx.db,
                        ctx.scripts.as_ref(),
                        env_a.id,
                        lasso_services::scripts::DeployRequest {
                            integration: None,
                            functions: compiled.functions,
                        },
                    )
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                };
                match result {
                    Ok(()) => (axum::http::StatusCode::OK, "deployed".to_string()),
                    Err(e) => (axum::http::StatusCode::INTERNAL_SERVER_ERROR, e),
                }
            }
        }),
    ))
    .await;
    Flow {
        base,
        key_a,
        deploy_hook: format!("{deploy_hook}/deploy"),
        workers: Workers::start(ctx),
    }
}

#[tokio::test]
async fn the_dashboard_in_a_browser() {
    let f = flow().await;
    let run = browser::run_script(
        "dashboard.mjs",
        &[
            ("LASSO_BASE", &f.base),
            ("LASSO_KEY", &f.key_a),
            ("LASSO_DEPLOY_HOOK", &f.deploy_hook),
            ("LASSO_GRACE_SECS", "3"),
        ],
    )
    .await;
    println!("{}", run.stdout);
    f.workers.stop().await;
}

/// Refreshes the README's screenshots (docs/screenshots/*.png): `scripts/screenshots`.
#[tokio::test]
#[ignore = "refreshes the README's screenshots; run by scripts/screenshots"]
async fn readme_screenshots() {
    let f = flow().await;
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/screenshots");
    let dir = dir.display().to_string();
    browser::run_script(
        "dashboard.mjs",
        &[
            ("LASSO_BASE", &f.base),
            ("LASSO_KEY", &f.key_a),
            ("LASSO_DEPLOY_HOOK", &f.deploy_hook),
            ("LASSO_GRACE_SECS", "3"),
            ("LASSO_README_SCREENSHOTS", &dir),
        ],
    )
    .await;
    f.workers.stop().await;
}
