//! `lasso` refuses bad settings with one line naming the variable.

use std::process::Command;

#[test]
fn migrate_without_a_database_url_names_it() {
    let out = Command::new(env!("CARGO_BIN_EXE_lasso"))
        .arg("migrate")
        .env_clear()
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("LASSO_DATABASE_URL"), "{stderr}");
}

#[test]
fn dev_with_a_bad_transport_names_it() {
    // `lasso dev` writes its encryption key there before it reads the transport; removed on drop.
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_lasso"))
        .args(["dev", "--state-dir"])
        .arg(dir.path())
        .env_clear()
        .env("LASSO_DATABASE_URL", "postgres://127.0.0.1:9/x")
        .env("LASSO_TASK_TRANSPORT", "carrier-pigeon")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("LASSO_TASK_TRANSPORT"), "{stderr}");
    assert!(stderr.contains("carrier-pigeon"), "{stderr}");
}
