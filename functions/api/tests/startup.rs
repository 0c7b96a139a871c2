//! A missing or malformed setting stops start-up with one line naming it, and a non-zero exit.

use std::process::Command;

fn start(envs: &[(&str, &str)]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_api"))
        .env_clear()
        .envs(envs.iter().copied())
        .output()
        .expect("run the api binary");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn missing_setting_is_named() {
    let (code, stderr) = start(&[]);
    assert_ne!(code, 0);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("LASSO_DATABASE_URL"), "{stderr}");
}

#[test]
fn malformed_setting_is_named_without_leaking_it() {
    let (code, stderr) = start(&[
        ("LASSO_DATABASE_URL", "postgres://u:hunter2@127.0.0.1/db"),
        ("LASSO_ENCRYPTION_KEY", "dG9vIHNob3J0"),
        ("LASSO_SCRIPT_STORE", "/tmp/x"),
    ]);
    assert_ne!(code, 0);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("LASSO_ENCRYPTION_KEY"), "{stderr}");
    assert!(stderr.contains("32"), "{stderr}");
    assert!(
        !stderr.contains("hunter2") && !stderr.contains("dG9vIHNob3J0"),
        "{stderr}"
    );
}
