//! The one browser-test harness of Lasso's web pages (the dashboard, the Connect UI): runs a
//! Node script of `tests/browser/` that drives Debian's headless Chromium with
//! `playwright-core` (both installed by `scripts/bootstrap --with-node --with-browser`). The
//! script gets a fresh profile directory and a screenshot directory; when it fails it saves
//! screenshots there (of every open page, and of each step before, when the script asks for
//! them) and prints their paths, and this panics with its output.

use std::path::PathBuf;

use crate::{node_modules, temp_dir};

/// Where `scripts/bootstrap --with-browser` installs Chromium.
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// What one run of a browser script left behind.
pub struct BrowserRun {
    pub stdout: String,
    pub screenshots: PathBuf,
}

/// Runs `tests/browser/<script>` with `env` (plus `LASSO_CHROMIUM`, `LASSO_PLAYWRIGHT`,
/// `LASSO_PROFILE_DIR`, `LASSO_SCREENSHOT_DIR`); panics with its output unless it succeeds.
/// The profile directory is removed afterwards; screenshots are kept on failure.
pub async fn run_script(script: &str, env: &[(&str, &str)]) -> BrowserRun {
    let playwright = node_modules().join("playwright-core");
    assert!(
        playwright.join("package.json").exists(),
        "{} is missing; run `scripts/bootstrap --with-node`",
        playwright.display()
    );
    assert!(
        std::path::Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing; run `scripts/bootstrap --with-browser`"
    );
    let script_path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("browser")
        .join(script);
    let profile = temp_dir("lasso-chromium-profile");
    let given = env.iter().find(|(k, _)| *k == "LASSO_SCREENSHOT_DIR");
    let screenshots = match given {
        Some((_, dir)) => PathBuf::from(dir),
        None => temp_dir("lasso-browser-screenshots"),
    };
    let out = tokio::process::Command::new("node")
        .arg(&script_path)
        .env("LASSO_CHROMIUM", CHROMIUM)
        .env("LASSO_PLAYWRIGHT", &playwright)
        .env("LASSO_PROFILE_DIR", &profile)
        .env("LASSO_SCREENSHOT_DIR", &screenshots)
        .envs(env.iter().copied())
        .kill_on_drop(true)
        .output()
        .await
        .expect("run node (is Node.js installed?)");
    let _ = std::fs::remove_dir_all(&profile);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{} failed (screenshots in {}):\n{stdout}\n{}",
        script_path.display(),
        screenshots.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    // Passed: the screenshots of its steps are of no more use.
    if given.is_none() {
        let _ = std::fs::remove_dir_all(&screenshots);
    }
    BrowserRun {
        stdout,
        screenshots,
    }
}
