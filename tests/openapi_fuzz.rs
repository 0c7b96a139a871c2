//! The OpenAPI document (`GET /openapi.json`) against the server it describes: every documented
//! operation reaches a handler, and schemathesis (PyPI, installed into the venv by
//! `scripts/bootstrap --with-schemathesis`, which `make test` runs) fuzzes every operation and
//! finds no 5xx and no answer outside the document.

use std::path::PathBuf;

use lasso_tests::*;
use serde_json::{Value, json};

/// Pinned in `scripts/bootstrap`.
const SCHEMATHESIS: &str = "schemathesis 4.32.5";

fn schemathesis() -> PathBuf {
    let cache = std::env::var_os("LASSO_CACHE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME is set")).join(".cache/lasso")
        });
    cache.join("venv/bin/st")
}

/// A `lasso dev`-like api on loopback with an environment, an integration and a connection.
/// Requests made for tenants are confined to
/// loopback (`LASSO_OUTBOUND_ONLY`; loopback itself is allowed by the test configuration's
/// `LASSO_OUTBOUND_ALLOW`): fuzzed URLs (proxy base-URL overrides, webhook URLs, a provider's
/// token endpoint) are refused before any packet, or DNS query, leaves the machine.
async fn seeded_api() -> TestApp {
    let app = TestApp::builder()
        .setting("LASSO_OUTBOUND_ONLY", "127.0.0.0/8")
        .environment("fuzz")
        .start()
        .await;
    let api = &app.api;
    let (status, body) = api
        .post(
            "/integrations",
            json!({"provider": "github", "unique_key": "fuzz",
                   "credentials": {"type": "OAUTH2", "client_id": "id", "client_secret": "secret"}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = api
        .post(
            "/connections",
            json!({"provider_config_key": "fuzz", "connection_id": "fuzz-connection",
                   "credentials": {"type": "OAUTH2", "access_token": "token"}}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    app
}

#[tokio::test(flavor = "multi_thread")]
async fn every_documented_operation_reaches_a_handler() {
    let app = seeded_api().await;
    let base = &app.base;
    let http = reqwest::Client::new();
    let doc: Value = http
        .get(format!("{base}/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().expect("paths");
    assert!(paths.len() > 40, "{} paths", paths.len());
    let mut operation_ids = std::collections::HashSet::new();
    for (path, item) in paths {
        for operation in item.as_object().unwrap().values() {
            let id = operation["operationId"].as_str().expect("operationId");
            assert!(
                operation_ids.insert(id.to_string()),
                "operationId {id} repeats"
            );
        }
        let concrete = path.replace('{', "x").replace('}', "");
        for method in item.as_object().unwrap().keys() {
            let method: reqwest::Method = method.to_uppercase().parse().unwrap();
            let response = http
                .request(method.clone(), format!("{base}{concrete}"))
                .send()
                .await
                .unwrap();
            let status = response.status();
            let text = response.text().await.unwrap();
            assert!(
                !text.contains("no route for") && status != 405,
                "{method} {path} is documented but not routed: {status} {text}"
            );
        }
    }
}

const FUZZ_CONFIG: &str = r#"
[dictionaries.integration]
values = ["fuzz"]

[dictionaries.connection]
values = ["fuzz-connection"]

[parameters]
"path.provider_config_key" = { dictionary = "integration", probability = 0.5 }
"path.unique_key" = { dictionary = "integration", probability = 0.5 }
"query.provider_config_key" = { dictionary = "integration", probability = 0.5 }
"header.Provider-Config-Key" = { dictionary = "integration", probability = 0.5 }
"path.connection_id" = { dictionary = "connection", probability = 0.5 }
"query.connection_id" = { dictionary = "connection", probability = 0.5 }
"header.Connection-Id" = { dictionary = "connection", probability = 0.5 }
"#;

/// Also fails when schemathesis is missing: `make test` installs it (`scripts/bootstrap
/// --with-schemathesis`), so its absence is a broken setup, not a reason to skip.
#[tokio::test(flavor = "multi_thread")]
async fn schemathesis_finds_no_server_error_and_no_answer_outside_the_document() {
    let st = schemathesis();
    assert!(
        st.exists(),
        "{} is missing: run scripts/bootstrap --with-schemathesis",
        st.display()
    );
    let app = seeded_api().await;
    let (base, key) = (&app.base, &app.key);
    let reports = temp_dir("lasso-schemathesis");
    // Half the generated identifiers name the seeded integration and connection, so the cases
    // reach real rows (connections read and refreshed, records, syncs, the proxy) as well as
    // unknown ones.
    let config = reports.join("schemathesis.toml");
    std::fs::write(&config, FUZZ_CONFIG).unwrap();
    let output = tokio::process::Command::new(&st)
        .arg("--config-file")
        .arg(&config)
        .arg("run")
        .arg(format!("{base}/openapi.json"))
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,response_schema_conformance",
            // Bounded: a few examples per operation keep the run to a couple of minutes on a
            // 2-core machine; the fixed seed makes a failure reproducible.
            "--max-examples",
            "10",
            "--seed",
            "18",
            "--workers",
            "2",
            "--phases",
            "examples,coverage,fuzzing",
            "--no-color",
            "--request-timeout",
            "30",
            "--generation-database",
            "none",
        ])
        .arg("--header")
        .arg(format!("Authorization: Bearer {key}"))
        .arg("--report-dir")
        .arg(&reports)
        .current_dir(&reports)
        .kill_on_drop(true)
        .output()
        .await
        .unwrap_or_else(|e| panic!("running {}: {e}", st.display()));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    // Its summary (operations, cases, checks) stays in the test's output.
    println!("{stdout}");
    assert!(
        stdout.contains(SCHEMATHESIS) || stdout.contains("Schemathesis v4.32.5"),
        "expected {SCHEMATHESIS}:\n{stdout}\n{stderr}"
    );
    assert!(
        output.status.success(),
        "schemathesis found problems:\n{stdout}\n{stderr}"
    );
    let _ = std::fs::remove_dir_all(&reports);
}
